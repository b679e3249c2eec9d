// The `.mms` scenario script: its abstract syntax and its parser.
//
// A script is checked whole before anything runs (docs/mms-format.md): parse()
// either returns every command or the first usage error as "FILE:LINE: message". The
// executors (the model's replay in replay.h, the host runner in host.h) consume the same
// Script, so the two outputs can be compared line by line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mirrormm::script {

enum class Op : uint8_t {
  kMmap,
  kMunmap,
  kMprotect,
  kMadvise,
  kMremap,
  kWrite,
  kRead,
  kMincore,
  kMaps,
  kSmaps,
  kFork,
  kExit,
  kMemfd,
  kTruncate,
  kFile,
  kMsync,
  kFsync,
  kPread,
  kMlock,
  kMunlock,
  kMlockall,
  kMunlockall,
  kSetrlimit,
  kMlocked,
  kMseal,
  kPmadvise,
};

// PROT as in <sys/mman.h>.
inline constexpr uint32_t kProtRead = 0x1;
inline constexpr uint32_t kProtWrite = 0x2;
inline constexpr uint32_t kProtExec = 0x4;
// mprotect suffixes `+growsdown` / `+growsup` (PROT_GROWSDOWN / PROT_GROWSUP values).
inline constexpr uint32_t kProtGrowsDown = 0x01000000;
inline constexpr uint32_t kProtGrowsUp = 0x02000000;

// FLAGS of mmap: script words, one bit each (not Linux's MAP_* values; executors translate).
enum MapFlag : uint32_t {
  kMapPrivate = 1u << 0,
  kMapShared = 1u << 1,
  kMapAnon = 1u << 2,
  kMapFixed = 1u << 3,
  kMapNoreplace = 1u << 4,
  kMapPopulate = 1u << 5,
  kMapNoreserve = 1u << 6,
  kMapGrowsdown = 1u << 7,
  kMapRofd = 1u << 8,
  kMapLocked = 1u << 9,
  kMapStack = 1u << 10,
  kMapSharedValidate = 1u << 11,
  kMapDroppable = 1u << 12,
};

// FLAGS of mlockall: script words, one bit each.
enum MlockallFlag : uint32_t {
  kMclCurrent = 1u << 0,
  kMclFuture = 1u << 1,
  kMclOnfault = 1u << 2,
};

// RESOURCE of setrlimit.
enum class Rlimit : uint8_t { kAs, kData, kStack, kMemlock };

// A limit of setrlimit: a number of bytes, `inf` (RLIM_INFINITY), or for `as` and `data`
// `+N`: the process's address-space (as) or data (data) size when the command runs, plus N.
struct RlimitValue {
  uint64_t value = 0;     // bytes, or N of `+N`
  bool infinite = false;  // `inf`
  bool relative = false;  // `+N`
};
// The map types: a FLAGS list has exactly one.
inline constexpr uint32_t kMapTypes = kMapPrivate | kMapShared | kMapSharedValidate | kMapDroppable;

enum class Advice : uint8_t {
  kDontneed,
  kDontfork,
  kDofork,
  kWipeonfork,
  kKeeponfork,
  kPopulateRead,
  kPopulateWrite,
  kWillneed,
  kCold,
  kPageout,
  kFree,
  kRemove,
  kGuardInstall,
  kGuardRemove,
  kDontneedLocked,
  kHugepage,
  kNohugepage,
};

// FLAGS of msync: script words, one bit each.
enum MsyncFlag : uint32_t {
  kMsyncSync = 1u << 0,
  kMsyncAsync = 1u << 1,
  kMsyncInvalidate = 1u << 2,
};

// The largest LEN of `pread` (a parse error above it): the host runner reads into a buffer
// of that size.
inline constexpr uint64_t kMaxPreadLen = 16ull << 20;

// FLAGS of mremap: script words, one bit each.
enum RemapFlag : uint32_t {
  kRemapMaymove = 1u << 0,
  kRemapFixed = 1u << 1,
  kRemapDontunmap = 1u << 2,
};

// Version 2 of the format adds model-only commands: secondary MMUs (`dev …`, a DeviceMirror
// per NAME) and model inspection (`stats`, `check`, `vmstat`, `pageinfo`). They have no Op of their own: a Command
// whose `model` is not kNone is one of them, and its `op` is then Op::kMaps and means
// nothing. Code written for the host-comparable set (host_safe, the generator, the host
// worker) therefore never meets an Op it does not know; executors test model_only() first.
// The host runner prints `SKIP` for them (docs/mms-v2.md).
enum class ModelOp : uint8_t {
  kNone,       // a host-comparable (v1) command: see `op`
  kDevAttach,  // dev attach NAME interval ADDR LEN | dev attach NAME classic
  kDevFault,   // dev fault NAME ADDR LEN read|write
  kDevShow,    // dev show NAME ADDR LEN
  kDevRead,    // dev read NAME ADDR LEN
  kDevWrite,   // dev write NAME ADDR LEN SEED
  kDevLog,     // dev log NAME
  kDevDetach,  // dev detach NAME
  kDevBegin,   // dev begin NAME ADDR LEN read|write
  kDevWalk,    // dev walk NAME
  kDevRetry,   // dev retry NAME
  kDevMap,     // dev map NAME [unchecked]
  kStats,      // stats
  kCheck,      // check
  kVmstat,     // vmstat [NAME ...]
  kPageinfo,   // pageinfo ADDR
  kSwapon,     // swapon SIZE
  kReclaim,    // reclaim PAGES
  kNodes,      // nodes N
  kMigrate,    // migrate ADDR LEN NODE
  // The dmirror test driver (mirrormm/dmirror.h): `hmm SUB ...`.
  kHmmOpen,            // hmm open DEV
  kHmmClose,           // hmm close M
  kHmmRead,            // hmm read M ADDR NPAGES
  kHmmWrite,           // hmm write M ADDR NPAGES SEED
  kHmmMigrate,         // hmm migrate M ADDR NPAGES
  kHmmMigrateSys,      // hmm migrate_sys M ADDR NPAGES
  kHmmSnapshot,        // hmm snapshot M ADDR NPAGES
  kHmmExclusive,       // hmm exclusive M ADDR NPAGES
  kHmmCheckExclusive,  // hmm check_exclusive M ADDR NPAGES
  kHmmRelease,         // hmm release M
  kHmmFailAlloc,       // hmm fail_alloc M
  kHmmMmap,            // hmm mmap M ADDR LEN PROT FLAGS
};

// The protocol of `dev attach`: DeviceMirror::Mode, or another kind of the SecondaryMmu
// registry (mirrormm/secondary_mmu.h), named by Command::dev_kind.
enum class DevMode : uint8_t { kInterval, kClassic, kKind };

// One command line. Only the fields its Op (or ModelOp) uses are meaningful:
//   mmap      addr len prot map_flags [name offset]   (has_file says whether NAME OFFSET given)
//   munmap    addr len
//   mprotect  addr len prot (prot may carry kProtGrowsDown / kProtGrowsUp)
//   madvise   addr len advice
//   mremap    addr len(old) new_len remap_flags [new_addr] (has_new_addr)
//   write     addr len seed
//   read      addr len
//   mincore   addr len
//   maps, smaps, fork, exit
//   memfd     name size
//   truncate  name size
//   file      name size
//   msync     addr len msync_flags
//   fsync     name
//   pread     name offset len
//   mlock     addr len [mlock_onfault]
//   munlock   addr len
//   mlockall  mlockall_flags
//   munlockall, mlocked
//   setrlimit rlimit rlim_soft rlim_hard
//   mseal     addr len
//   pmadvise  target addr len advice   (process_madvise from pid into process `target`)
//   dev attach   name dev_mode [addr len]   (addr len: interval mode only)
//   dev attach   name dev_kind [addr len]   (dev_mode kKind; dev_span says whether addr len given)
//   dev fault    name addr len dev_write
//   dev show|read name addr len
//   dev write    name addr len seed
//   dev log|detach name
//   dev begin    name addr len dev_write
//   dev walk|retry name
//   dev map      name dev_unchecked
//   stats, check
//   vmstat       names (empty: every counter)
//   pageinfo     addr
//   nodes        size (N)
//   migrate      addr len size (NODE)
//   hmm open     size (DEV)
//   hmm close|release|fail_alloc  mirror
//   hmm read|migrate|migrate_sys|snapshot|exclusive|check_exclusive  mirror addr len (NPAGES)
//   hmm write    mirror addr len (NPAGES) seed
struct Command {
  Op op = Op::kMaps;
  uint32_t line = 0;  // 1-based line number in the file
  uint64_t pid = 1;   // `@N` prefix; 1 without it
  uint64_t addr = 0;
  uint64_t len = 0;
  uint64_t new_len = 0;
  uint64_t new_addr = 0;
  uint64_t seed = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t target = 0;  // pmadvise: the process advised
  uint32_t prot = 0;
  uint32_t map_flags = 0;
  uint32_t remap_flags = 0;
  uint32_t msync_flags = 0;
  Advice advice = Advice::kDontneed;
  bool has_file = false;
  bool has_new_addr = false;
  std::string name;  // a file NAME, or a device NAME for `dev`
  ModelOp model = ModelOp::kNone;
  DevMode dev_mode = DevMode::kInterval;
  bool dev_write = false;  // dev fault, dev begin: `write` (else `read`)
  bool dev_unchecked = false;  // dev map: `unchecked` (install without read_retry)
  std::string dev_kind;    // dev attach of DevMode::kKind: KIND[:VARIANT]
  bool dev_span = false;   // dev attach of DevMode::kKind: ADDR LEN were given
  std::vector<std::string> names;  // vmstat: the counters asked for, in order (empty: all)
  uint64_t mirror = 0;             // hmm: the mirror M that `hmm open` printed
  bool mlock_onfault = false;      // mlock: `onfault` (mlock2 with MLOCK_ONFAULT)
  uint32_t mlockall_flags = 0;     // mlockall: MlockallFlag bits
  Rlimit rlimit = Rlimit::kAs;     // setrlimit
  RlimitValue rlim_soft, rlim_hard;
};

// True for the model-only (version 2) commands: dev, stats, check, vmstat, pageinfo, swapon,
// reclaim, nodes, migrate, hmm.
inline bool model_only(const Command& c) { return c.model != ModelOp::kNone; }

struct Script {
  std::string file;  // the name used in diagnostics
  std::vector<Command> commands;
};

// Parses a whole script. On success returns the script; on the first usage error returns
// std::nullopt and sets *error to "FILE:LINE: message".
std::optional<Script> parse(std::string_view text, std::string_view file, std::string* error);

// True when the script has a model-only command (it then needs the coherence checker).
bool uses_model_only(const Script& s);

// Reads and parses FILE; an unreadable file is reported as "FILE: message". The path "-"
// reads standard input to its end, named kStdinName in diagnostics.
inline constexpr const char* kStdinName = "<stdin>";
std::optional<Script> parse_file(const std::string& path, std::string* error);

// Renders a command back to its canonical script line (without comment), e.g.
// "@2 mmap 0x200000000000 0x4000 rw- private+anon+fixed". parse(format(c)) == c.
std::string format(const Command& c);

// Script words to Linux's ABI values (the constants of mirrormm/mman.h), shared by the model's
// replay and the host runner so that both hand the kernel the same arguments.
// PROT and its +growsdown/+growsup bits already are Linux's values.
uint64_t linux_map_flags(uint32_t map_flags);
uint64_t linux_madvise(Advice advice);
uint64_t linux_mremap_flags(uint32_t remap_flags);
uint64_t linux_msync_flags(uint32_t msync_flags);
uint64_t linux_mlockall_flags(uint32_t mlockall_flags);
unsigned linux_rlimit(Rlimit r);
// The limit a RlimitValue stands for, given the process's current size in bytes (the
// address space for `as`, data for `data`; ignored unless relative): RLIM_INFINITY for `inf`,
// size + N (wrapping) for `+N`.
inline uint64_t rlimit_bytes(const RlimitValue& v, uint64_t current) {
  if (v.infinite) return ~0ull;
  return v.relative ? current + v.value : v.value;
}

// The byte written at address a by `write ... SEED`.
inline uint8_t pattern(uint64_t a, uint64_t seed) {
  return static_cast<uint8_t>(((a ^ (seed << 32)) * 0x9E3779B97F4A7C15ull) >> 56);
}

inline constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
inline constexpr uint64_t kFnvPrime = 0x100000001b3ull;

// The window host-comparable scripts stay in.
inline constexpr uint64_t kWindowStart = 0x200000000000ull;
inline constexpr uint64_t kWindowEnd = 0x300000000000ull;

}  // namespace mirrormm::script
