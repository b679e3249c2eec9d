// The random script generator (see scriptgen.h).
//
// Layout of the window as the generator uses it (all far from the window's edges except
// the hot region, which starts at the window's first page and only grows upwards):
//
//   kHot     0x200000000000  64 pages hot (sometimes 1024): most commands land here
//   kStack   0x200011000000  top of the stack area; MAP_GROWSDOWN mappings end at or
//                            below it, other mappings and accesses reach 16 MiB below it
//   kHigh    0x2ffffc000000  64 pages hot (sometimes 1024), 64 MiB below the window's end
//
// The generator keeps a rough picture (live processes, file names, growsdown mappings it
// asked for) only to aim its commands; it never needs to know whether a command succeeded.
// Determinism: one splitmix64 stream, no floating point, no std:: distributions.
#include <algorithm>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "mirrormm/host.h"
#include "mirrormm/script.h"
#include "mirrormm/scriptgen.h"

namespace mirrormm::gen {
namespace {

using script::Command;
using script::Op;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kHot = script::kWindowStart;
constexpr uint64_t kStack = script::kWindowStart + 0x11000000;
constexpr uint64_t kStackSpan = 16ull << 20;
constexpr uint64_t kHigh = script::kWindowEnd - (64ull << 20);
constexpr uint64_t kGuardGapPages = 256;
constexpr size_t kMaxLive = 6;
constexpr uint64_t kTiB = 1ull << 40;

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n); n > 0.
  uint64_t below(uint64_t n) { return next() % n; }
  // Uniform in [lo, hi].
  uint64_t between(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }
  // True with probability per_mille / 1000.
  bool chance(uint64_t per_mille) { return below(1000) < per_mille; }
  template <typename T, size_t N>
  const T& pick(const T (&items)[N]) {
    return items[below(N)];
  }

 private:
  uint64_t state_;
};

// The generator's rough picture of what is mapped: ranges it asked for with fixed or
// noreplace minus ranges it unmapped, across all processes, regardless of success. Good
// enough to aim commands at mappings (and at their edges) most of the time.
class RoughMap {
 public:
  void add(uint64_t start, uint64_t end) {
    remove(start, end);
    ranges_[start] = end;
  }

  void remove(uint64_t start, uint64_t end) {
    auto it = ranges_.upper_bound(start);
    if (it != ranges_.begin()) --it;
    while (it != ranges_.end() && it->first < end) {
      uint64_t s = it->first, e = it->second;
      if (e <= start) {
        ++it;
        continue;
      }
      it = ranges_.erase(it);
      if (s < start) ranges_[s] = start;
      if (e > end) ranges_[end] = e;
    }
  }

  bool empty() const { return ranges_.empty(); }
  size_t size() const { return ranges_.size(); }

  // The i-th range, 0 <= i < size().
  std::pair<uint64_t, uint64_t> at(size_t i) const {
    auto it = ranges_.begin();
    std::advance(it, static_cast<long>(i));
    return *it;
  }

 private:
  std::map<uint64_t, uint64_t> ranges_;
};

struct Weights {
  int mmap_anon, mmap_file, munmap, mprotect, madvise, mremap, write, read, mincore, maps, fork, exit, memfd, truncate;
  int smaps;  // as often as maps
  int file, msync, fsync, pread;
  int mseal = 0, pmadvise = 0;
  // Whether madvise draws from every advice and mmap now and then uses the map types
  // shared_validate and droppable and the stack flag (the older profiles keep their streams).
  bool extended = false;
  // Locked memory and limits (0 in profiles without them).
  int mlock = 0, munlock = 0, mlockall = 0, munlockall = 0, setrlimit = 0, mlocked = 0;
};

constexpr Weights kAnonWeights{24, 0, 9, 16, 0, 0, 13, 9, 6, 16, 3, 1, 0, 0, 16, 0, 0, 0, 0, 0, 0, false};
constexpr Weights kFilesWeights{8, 20, 8, 10, 8, 8, 10, 8, 5, 12, 3, 1, 6, 5, 12, 6, 6, 3, 5, 0, 0, false};
constexpr Weights kAllWeights{18, 10, 8, 12, 7, 8, 11, 8, 5, 13, 3, 1, 3, 3, 13, 2, 3, 1, 2, 1, 2, true,
                              3, 2, 1, 1, 1, 2};
// No regular files: huge-page advice on one changes its readahead in a way the model does
// not follow (large folios, see clamp_hugepage); hole punching in them has its scenario.
constexpr Weights kAdviseWeights{16, 8, 6, 8, 24, 6, 12, 10, 6, 12, 3, 1, 3, 2, 12, 0, 0, 0, 0, 2, 6, true};
constexpr Weights kLockWeights{20, 0, 8, 12, 6, 8, 11, 8, 6, 8, 3, 1, 0, 0, 6, 0, 0, 0, 0, 0, 0, false,
                               14, 8, 3, 2, 4, 12};

// Shared-memory files are named f*, regular files r*; now and then a command names a file of
// the other kind (one namespace: -EEXIST) or one never created.
constexpr const char* kFileNames[] = {"f0", "f1", "f2", "f3"};
constexpr const char* kRegularNames[] = {"r0", "r1", "r2"};

// Whether an edge length of a terabyte (which the kernel may accept) is harmless for a
// command: it is for commands that only change mappings, not for ones that touch data.
enum class Terabyte { kRefuse, kAllow };

class Generator {
 public:
  explicit Generator(const Options& o)
      : rng_(o.seed ^ 0x6d6972726f726d6dull), weights_(o.profile == Profile::kAnon     ? kAnonWeights
                                                       : o.profile == Profile::kFiles  ? kFilesWeights
                                                       : o.profile == Profile::kLock   ? kLockWeights
                                                       : o.profile == Profile::kAdvise ? kAdviseWeights
                                                                                       : kAllWeights) {
    live_.push_back(1);
  }

  std::string run(int commands) {
    std::string text;
    for (int i = 0; i < commands; ++i) {
      Command c = next_command();
      text += script::format(c);
      text += '\n';
    }
    return text;
  }

 private:
  Command next_command() {
    // A candidate that host_safe() rejects is a generator bug in the making; drawing again
    // keeps the script safe and the stream deterministic.
    for (int attempt = 0; attempt < 16; ++attempt) {
      Command c = candidate();
      if (host::host_safe(c) && addresses_in_window(c)) {
        commit(c);
        return c;
      }
    }
    Command maps;
    maps.op = Op::kMaps;
    return maps;
  }

  // Beyond host safety, the script contract: every address a command acts on is in the
  // window or at/above TASK_SIZE (where the kernel refuses it), except an mmap hint, which
  // is in the window or 0.
  static bool addresses_in_window(const Command& c) {
    auto in_window = [](uint64_t a) { return a >= script::kWindowStart && a < script::kWindowEnd; };
    auto ok = [&](uint64_t a) { return in_window(a) || a >= host::kTaskSize; };
    switch (c.op) {
      case Op::kMmap:
        if (!(c.map_flags & (script::kMapFixed | script::kMapNoreplace))) return c.addr == 0 || in_window(c.addr);
        return ok(c.addr);
      case Op::kMremap: return ok(c.addr) && (!c.has_new_addr || ok(c.new_addr));
      case Op::kMunmap:
      case Op::kMprotect:
      case Op::kMadvise:
      case Op::kMseal:
      case Op::kPmadvise:
      case Op::kWrite:
      case Op::kRead:
      case Op::kMincore:
      case Op::kMlock:
      case Op::kMunlock: return ok(c.addr);
      default: return true;
    }
  }

  // Bookkeeping for a command that goes into the script.
  void commit(const Command& c) {
    bool live = is_live(c.pid);
    if (c.op == Op::kFork && live) live_.push_back(next_pid_++);
    if (c.op == Op::kExit && live) {
      for (size_t i = 0; i < live_.size(); ++i) {
        if (live_[i] == c.pid) live_.erase(live_.begin() + static_cast<long>(i));
      }
    }
    if (c.op == Op::kFile) regular_file_made_ = true;
    if (c.op == Op::kMemfd || c.op == Op::kFile) {
      bool known = false;
      for (const std::string& n : files_) known |= n == c.name;
      if (!known) files_.push_back(c.name);
    }
    if (c.op == Op::kMmap && (c.map_flags & (script::kMapFixed | script::kMapNoreplace)) && c.len > 0 &&
        c.len <= (1ull << 32) && host::host_safe(c) && c.addr >= script::kWindowStart &&
        c.addr + c.len <= script::kWindowEnd)
      mapped_.add(c.addr & ~(kPage - 1), (c.addr + c.len + kPage - 1) & ~(kPage - 1));
    if (c.op == Op::kMunmap && c.addr % kPage == 0 && c.addr >= script::kWindowStart &&
        c.addr < script::kWindowEnd && c.len > 0 && c.len <= script::kWindowEnd - c.addr)
      mapped_.remove(c.addr, (c.addr + c.len + kPage - 1) & ~(kPage - 1));
    // Which processes lock their future mappings (mlockall future; not inherited by fork).
    const bool mlockall_valid = c.mlockall_flags != 0 && c.mlockall_flags != script::kMclOnfault;
    if (c.op == Op::kMlockall && live && mlockall_valid) {
      std::erase(future_, c.pid);
      if (c.mlockall_flags & script::kMclFuture) future_.push_back(c.pid);
    }
    if (c.op == Op::kMunlockall || c.op == Op::kExit) std::erase(future_, c.pid);
    if (c.op == Op::kMmap && (c.map_flags & script::kMapGrowsdown) && c.len > 0 && c.len < (1ull << 30)) {
      if (growsdown_.size() >= 8) growsdown_.erase(growsdown_.begin());
      growsdown_.push_back(c.addr);
    }
  }

  bool is_live(uint64_t pid) const {
    for (uint64_t p : live_) {
      if (p == pid) return true;
    }
    return false;
  }

  Command candidate() {
    const Weights& w = weights_;
    int table[] = {w.mmap_anon, w.mmap_file,  w.munmap,    w.mprotect, w.madvise, w.mremap,   w.write,
                   w.read,      w.mincore,    w.maps,      w.fork,     w.exit,    w.memfd,    w.truncate,
                   w.smaps,     w.file,       w.msync,     w.fsync,    w.pread,   w.mseal,    w.pmadvise,
                   w.mlock,     w.munlock,    w.mlockall,  w.munlockall, w.setrlimit, w.mlocked};
    int total = 0;
    for (int t : table) total += t;
    int r = static_cast<int>(rng_.below(static_cast<uint64_t>(total)));
    int kind = 0;
    while (r >= table[kind]) r -= table[kind++];
    Command c;
    c.pid = pick_pid();
    switch (kind) {
      case 0: gen_mmap_anon(&c); break;
      case 1:
        // A file must exist before mapping it is interesting.
        if (files_.empty() && !rng_.chance(100)) {
          gen_file_size(&c, Op::kMemfd);
        } else {
          gen_mmap_file(&c);
        }
        break;
      case 2: gen_range(&c, Op::kMunmap); break;
      case 3: gen_mprotect(&c); break;
      case 4: gen_madvise(&c); break;
      case 5: gen_mremap(&c); break;
      case 6: gen_access(&c, Op::kWrite); break;
      case 7: gen_access(&c, Op::kRead); break;
      case 8: gen_mincore(&c); break;
      case 9: c.op = Op::kMaps; break;
      case 10:
        c.op = live_.size() < kMaxLive ? Op::kFork : Op::kMaps;
        break;
      case 11: gen_exit(&c); break;
      case 12:
      case 13: gen_file_size(&c, kind == 12 ? Op::kMemfd : Op::kTruncate); break;
      case 14: c.op = Op::kSmaps; break;
      case 15: gen_file_size(&c, Op::kFile); break;
      case 16: gen_msync(&c); break;
      case 17:
        c.op = Op::kFsync;
        c.name = file_name();
        break;
      case 18: gen_pread(&c); break;
      case 19: gen_range(&c, Op::kMseal); break;
      case 20: gen_pmadvise(&c); break;
      case 21: gen_mlock(&c, Op::kMlock); break;
      case 22: gen_mlock(&c, Op::kMunlock); break;
      case 23: gen_mlockall(&c); break;
      case 24: c.op = Op::kMunlockall; break;
      case 25: gen_setrlimit(&c); break;
      case 26: c.op = Op::kMlocked; break;
    }
    return c;
  }

  // Whether the script locks memory: population then follows mappings around (mlockall,
  // MAP_LOCKED, mremap of a locked mapping), so no mapping may be large enough to make it
  // expensive (no terabyte mappings).
  bool locks() const { return weights_.mlock > 0; }

  // mlock/munlock: like a range command, unaligned now and then (both round to pages), never
  // a terabyte (mlock would populate it).
  void gen_mlock(Command* c, Op op) {
    c->op = op;
    if (!aim(c, 1024)) {
      c->addr = pick_addr();
      c->len = pick_pages() * kPage;
    }
    if (rng_.chance(80)) c->addr += rng_.between(1, kPage - 1);
    if (op == Op::kMlock && rng_.chance(300)) c->mlock_onfault = true;
    maybe_edge(c, Terabyte::kRefuse);
  }

  void gen_mlockall(Command* c) {
    using script::kMclCurrent;
    using script::kMclFuture;
    using script::kMclOnfault;
    static constexpr uint32_t kFlags[] = {kMclCurrent,
                                          kMclFuture,
                                          kMclCurrent | kMclFuture,
                                          kMclCurrent | kMclOnfault,
                                          kMclFuture | kMclOnfault,
                                          kMclCurrent | kMclFuture | kMclOnfault,
                                          kMclOnfault,  // -EINVAL
                                          0};           // -EINVAL
    c->op = Op::kMlockall;
    c->mlockall_flags = rng_.pick(kFlags);
  }

  // setrlimit: RLIMIT_AS and RLIMIT_DATA only relative to the current size (`+N`, since the
  // host worker's own mappings count too) or `inf`, with an unlimited hard limit mostly so
  // that a later `inf` lifts them again; RLIMIT_STACK between 1 MiB and 16 MiB (what the host
  // worker's own stack can live with); RLIMIT_MEMLOCK anything (root is not bound by it).
  void gen_setrlimit(Command* c) {
    using script::Rlimit;
    using script::RlimitValue;
    static constexpr Rlimit kResources[] = {Rlimit::kAs, Rlimit::kData, Rlimit::kStack, Rlimit::kMemlock};
    c->op = Op::kSetrlimit;
    c->rlimit = rng_.pick(kResources);
    RlimitValue inf;
    inf.infinite = true;
    auto relative = [&] {
      RlimitValue v;
      v.relative = true;
      static constexpr uint64_t kPages[] = {0, 1, 2, 4, 8, 16, 64, 1024};
      v.value = rng_.pick(kPages) * kPage;
      // `data +0` in a process without data is a soft limit of 0 in the model (whose
      // processes have no data of their own), which ignore_rlimit_data's exception treats
      // apart; the host worker has data, so its limit is not 0.
      if (c->rlimit == Rlimit::kData && v.value == 0) v.value = kPage;
      if (rng_.chance(100)) v.value += rng_.between(1, kPage - 1);
      return v;
    };
    auto absolute = [&](uint64_t lo, uint64_t hi) {
      RlimitValue v;
      v.value = rng_.between(lo / kPage, hi / kPage) * kPage;
      if (rng_.chance(100)) v.value += rng_.between(1, kPage - 1);
      return v;
    };
    switch (c->rlimit) {
      case Rlimit::kAs:
      case Rlimit::kData:
        c->rlim_soft = rng_.chance(250) ? inf : relative();
        c->rlim_hard = rng_.chance(900) ? inf : relative();
        if (c->rlimit == Rlimit::kData && rng_.chance(150)) c->rlim_soft = RlimitValue{};  // soft 0
        break;
      case Rlimit::kStack:
        c->rlim_soft = rng_.chance(150) ? inf : absolute(1ull << 20, 16ull << 20);
        c->rlim_hard = rng_.chance(900) ? inf : absolute(1ull << 20, 16ull << 20);
        break;
      case Rlimit::kMemlock:
        c->rlim_soft = rng_.chance(200) ? RlimitValue{} : absolute(0, 16ull << 20);
        c->rlim_hard = rng_.chance(500) ? c->rlim_soft : absolute(0, 16ull << 20);
        if (rng_.chance(100)) c->rlim_hard = inf;  // above the first limit: -EPERM
        break;
    }
  }

  // Mostly a live process; now and then a dead or never-created one (-ESRCH).
  uint64_t pick_pid() {
    if (rng_.chance(25)) {
      uint64_t choices[] = {0, next_pid_, next_pid_ + 1 + rng_.below(5), 1 + rng_.below(next_pid_)};
      return rng_.pick(choices);
    }
    if (live_.empty()) return 1;
    // Favour process 1 a little so that the parent's layout keeps evolving.
    if (rng_.chance(300) && is_live(1)) return 1;
    return live_[rng_.below(live_.size())];
  }

  void gen_exit(Command* c) {
    c->op = Op::kExit;
    // Keep at least one process alive most of the time: after the last exit every later
    // command only prints -ESRCH.
    if (live_.size() <= 1 && !rng_.chance(50)) c->op = Op::kMaps;
    if (rng_.chance(200) && is_live(1)) c->pid = 1;
  }

  // A page-aligned address in one of the regions.
  uint64_t pick_addr() {
    uint64_t r = rng_.below(100);
    if (r < 68) return kHot + page_index() * kPage;
    if (r < 84) return stack_addr();
    return kHigh + page_index() * kPage;
  }

  // Aims [addr, addr+len) at something mapped: a page-aligned piece of a known range,
  // sometimes reaching a little past either end. Returns false (leaving c alone) when the
  // dice say otherwise or nothing is known to be mapped.
  bool aim(Command* c, uint64_t max_pages) {
    if (mapped_.empty() || !rng_.chance(650)) return false;
    auto [start, end] = mapped_.at(rng_.below(mapped_.size()));
    uint64_t pages = (end - start) / kPage;
    uint64_t first = rng_.chance(350) ? 0 : rng_.below(pages);
    uint64_t count = rng_.chance(350) ? pages - first : rng_.between(1, pages - first);
    if (rng_.chance(150) && first > 0) {
      --first;
      ++count;
    }
    if (rng_.chance(150)) ++count;
    if (count > max_pages) count = max_pages;
    c->addr = start + first * kPage;
    c->len = count * kPage;
    return true;
  }

  uint64_t page_index() { return rng_.chance(150) ? rng_.below(1024) : rng_.below(64); }

  // In the stack area: just below kStack (where growsdown mappings live), or anywhere in
  // the 16 MiB below it, or at guard-gap distances below a growsdown mapping.
  uint64_t stack_addr() {
    uint64_t r = rng_.below(100);
    if (r < 50) return kStack - rng_.between(1, 32) * kPage;
    if (r < 75 && !growsdown_.empty()) {
      uint64_t g = growsdown_[rng_.below(growsdown_.size())];
      uint64_t d = kGuardGapPages + rng_.between(0, 8) - 4 + rng_.between(0, 2) * rng_.below(64);
      return g - d * kPage;
    }
    return kStack - rng_.between(1, kStackSpan / kPage) * kPage;
  }

  // Lengths in pages for mapping commands.
  uint64_t pick_pages() {
    uint64_t r = rng_.below(100);
    if (r < 60) return rng_.between(1, 8);
    if (r < 90) return rng_.between(1, 64);
    return rng_.between(1, 1024);
  }

  // Edge values at a low rate: unaligned address, zero/one/unaligned/huge/overflowing
  // length, addresses at or above TASK_SIZE. `terabyte` says whether a huge length that the
  // kernel might accept is harmless for this command.
  void maybe_edge(Command* c, Terabyte terabyte) {
    if (!rng_.chance(60)) return;
    switch (rng_.below(9)) {
      case 0: c->addr += rng_.between(1, kPage - 1); break;
      case 1: c->len = 0; break;
      case 2: c->len = 1; break;
      case 3: c->len = c->len + rng_.between(1, kPage - 1); break;
      case 4: {
        uint64_t huge[] = {0xfffffffffffff000ull, 0x800000000000ull, kTiB};
        uint64_t h = rng_.pick(huge);
        if (terabyte == Terabyte::kAllow || h != kTiB) c->len = h;
        break;
      }
      case 5: {
        uint64_t high[] = {host::kTaskSize, 0x800000000000ull, 0xfffffffffffff000ull};
        c->addr = rng_.pick(high);
        break;
      }
      case 6: c->len = ~uint64_t{0} - c->addr + 1 + rng_.below(3) * kPage; break;  // addr+len wraps
      case 7: c->len = rng_.between(2, 4) * kPage - 1; break;
      default: c->addr = kHot + rng_.below(4) * kPage; break;  // pile onto the first pages
    }
  }

  uint32_t pick_prot() { return static_cast<uint32_t>(rng_.below(8)); }

  void gen_mmap_anon(Command* c) {
    c->op = Op::kMmap;
    c->prot = pick_prot();
    c->map_flags = script::kMapAnon | (rng_.chance(700) ? script::kMapPrivate : script::kMapShared);
    bool growsdown = rng_.chance(80);
    uint64_t pages = pick_pages();
    if (growsdown) {
      c->map_flags |= script::kMapGrowsdown;
      pages = rng_.between(1, 16);
      // Mostly ending at the top of the stack area; sometimes anywhere (also shared, which
      // Linux refuses).
      c->addr = rng_.chance(750) ? kStack - pages * kPage : pick_addr();
    } else {
      c->addr = pick_addr();
    }
    c->len = pages * kPage;
    uint64_t placement = rng_.below(100);
    if (placement < 62) {
      c->map_flags |= script::kMapFixed;
    } else if (placement < 90) {
      c->map_flags |= script::kMapNoreplace;
    } else if (placement < 93) {
      c->map_flags |= script::kMapFixed | script::kMapNoreplace;
    } else if (placement < 98) {
      // A bare hint in the window: used if free, else the host picks its own address.
      if (rng_.chance(300)) c->addr += rng_.between(1, kPage - 1);
    } else {
      c->addr = 0;
    }
    if (rng_.chance(100) && c->len <= 64 * kPage) c->map_flags |= script::kMapPopulate;
    bool huge = false;
    if (rng_.chance(120)) c->map_flags |= script::kMapNoreserve;
    if (locks() && rng_.chance(120)) c->map_flags |= script::kMapLocked;
    if (!locks() && rng_.chance(15)) {
      // A terabyte: fine with noreserve or without write access, ENOMEM (overcommit)
      // for private writable or shared memory without it.
      c->len = kTiB;
      c->addr = kHot + rng_.below(64) * kPage;
      if (rng_.chance(600)) c->map_flags |= script::kMapNoreserve;
      huge = true;
    }
    if (!huge) maybe_edge(c, Terabyte::kRefuse);
    if (c->len > 64 * kPage) c->map_flags &= ~script::kMapPopulate;
    if (weights_.extended) extend_map_flags(c);
  }

  // The map types shared_validate and droppable and the stack flag, now and then.
  void extend_map_flags(Command* c) {
    if (rng_.chance(60)) c->map_flags |= script::kMapStack;
    if (rng_.chance(60)) {
      c->map_flags &= ~script::kMapTypes;
      c->map_flags |= rng_.chance(500) ? script::kMapDroppable : script::kMapSharedValidate;
    }
  }

  void gen_mmap_file(Command* c) {
    c->op = Op::kMmap;
    c->prot = pick_prot();
    c->map_flags = rng_.chance(500) ? script::kMapShared : script::kMapPrivate;
    c->has_file = true;
    c->name = file_name();
    c->addr = pick_addr();
    c->len = pick_pages() * kPage;
    c->offset = rng_.chance(800) ? rng_.below(16) * kPage : rng_.below(1100) * kPage;
    uint64_t placement = rng_.below(100);
    if (placement < 65) {
      c->map_flags |= script::kMapFixed;
    } else if (placement < 93) {
      c->map_flags |= script::kMapNoreplace;
    } else if (placement < 99) {
      // a bare hint
    } else {
      c->addr = 0;
    }
    if (rng_.chance(200)) c->map_flags |= script::kMapRofd;
    if (rng_.chance(60) && c->len <= 64 * kPage) c->map_flags |= script::kMapPopulate;
    if (rng_.chance(50)) c->map_flags |= script::kMapNoreserve;
    if (rng_.chance(15)) c->map_flags |= script::kMapGrowsdown;  // EINVAL for files
    if (rng_.chance(20)) c->map_flags |= script::kMapAnon;       // fd ignored
    if (locks() && rng_.chance(60)) c->map_flags |= script::kMapLocked;
    if (rng_.chance(30)) {
      uint64_t odd[] = {1, kPage - 1, 0xfffffffffffff000ull, 0x8000000000000000ull};
      c->offset = rng_.pick(odd);
    }
    maybe_edge(c, Terabyte::kRefuse);
    if (c->len > 64 * kPage) c->map_flags &= ~script::kMapPopulate;
    if (weights_.extended) extend_map_flags(c);
  }

  std::string file_name() {
    if (files_.empty() || rng_.chance(80)) return rng_.pick(kFileNames);
    return files_[rng_.below(files_.size())];
  }

  void gen_file_size(Command* c, Op op) {
    c->op = op;
    c->name = op == Op::kFile && !rng_.chance(100) ? std::string(rng_.pick(kRegularNames)) : file_name();
    uint64_t r = rng_.below(100);
    if (r < 70) {
      c->size = rng_.below(65) * kPage;
    } else if (r < 85) {
      c->size = rng_.below(64 * kPage);
    } else if (r < 97) {
      c->size = rng_.below(1025) * kPage;
    } else {
      uint64_t odd[] = {kTiB, 0x8000000000000000ull, ~uint64_t{0}};
      c->size = rng_.pick(odd);
    }
  }

  // msync over a range like munmap's (mapped, partly mapped or not), with a mix of flags.
  void gen_msync(Command* c) {
    gen_range(c, Op::kMsync);
    const uint32_t words[] = {script::kMsyncSync, script::kMsyncAsync, script::kMsyncInvalidate};
    c->msync_flags = rng_.pick(words);
    if (rng_.chance(150)) c->msync_flags |= script::kMsyncInvalidate;
    if (rng_.chance(100)) c->msync_flags |= rng_.pick(words);  // sync+async now and then: -EINVAL
    if (rng_.chance(80)) c->msync_flags = 0;
  }

  // pread of a file: mostly inside its first pages, unaligned now and then, past the end,
  // or at an offset the kernel refuses.
  void gen_pread(Command* c) {
    c->op = Op::kPread;
    c->name = file_name();
    c->offset = rng_.below(72) * kPage;
    if (rng_.chance(300)) c->offset += rng_.below(kPage);
    c->len = (1 + rng_.below(8)) * kPage;
    if (rng_.chance(300)) c->len = rng_.below(3 * kPage);
    if (rng_.chance(40)) {
      uint64_t odd[] = {0x8000000000000000ull, 0x7fffffffffffffffull, kTiB};
      c->offset = rng_.pick(odd);
    }
  }

  // munmap (and the shape shared by range commands).
  void gen_range(Command* c, Op op) {
    c->op = op;
    if (!aim(c, 1024)) {
      c->addr = pick_addr();
      c->len = pick_pages() * kPage;
    }
    maybe_edge(c, Terabyte::kAllow);
  }

  void gen_mprotect(Command* c) {
    gen_range(c, Op::kMprotect);
    c->prot = pick_prot();
    if (rng_.chance(40)) c->prot |= script::kProtGrowsDown;
    if (rng_.chance(15)) c->prot |= script::kProtGrowsUp;
  }

  void gen_madvise(Command* c) {
    using script::Advice;
    static constexpr Advice kAll[] = {Advice::kDontneed,     Advice::kDontfork,      Advice::kDofork,
                                      Advice::kWipeonfork,   Advice::kKeeponfork,    Advice::kPopulateRead,
                                      Advice::kPopulateWrite, Advice::kWillneed,     Advice::kCold,
                                      Advice::kPageout};
    // The newer advice, twice as likely as each older one in the extended profiles: the
    // lazy free and its pageout, hole punching, guard regions and the huge-page flags.
    static constexpr Advice kNew[] = {Advice::kFree,         Advice::kRemove,         Advice::kGuardInstall,
                                      Advice::kGuardRemove,  Advice::kDontneedLocked, Advice::kHugepage,
                                      Advice::kNohugepage,   Advice::kPageout,        Advice::kFree,
                                      Advice::kGuardInstall};
    c->op = Op::kMadvise;
    c->advice = weights_.extended && rng_.chance(500) ? rng_.pick(kNew) : rng_.pick(kAll);
    if (!aim(c, 1024)) {
      c->addr = pick_addr();
      c->len = pick_pages() * kPage;
    }
    // Guard installation allocates page tables for its markers: over a terabyte mapping
    // that is gigabytes, which the host has and the model's memory does not.
    bool touches_data = c->advice == Advice::kPopulateRead || c->advice == Advice::kPopulateWrite ||
                        c->advice == Advice::kWillneed || c->advice == Advice::kGuardInstall;
    if (touches_data && c->len > 64 * kPage) c->len = rng_.between(1, 64) * kPage;
    maybe_edge(c, touches_data ? Terabyte::kRefuse : Terabyte::kAllow);
    // An edge may have grown it again: a range that does not wrap stays within 64 pages.
    if (touches_data && c->len > 64 * kPage && c->len <= ~uint64_t{0} - c->addr) c->len = 64 * kPage;
    clamp_hugepage(c);
  }

  // Huge-page advice covers less than 2 MiB: a VM_HUGEPAGE range that could hold a huge
  // page behaves differently on a host with transparent huge pages (a read fault there
  // gets the huge zero page and an anon_vma). And `hugepage` comes only before the first
  // regular file: a fault in a VM_HUGEPAGE mapping of one reads its 2 MiB window into large
  // folios, the first marked for readahead, which fault-around then skips; the model has
  // no large folios (docs/mms-format.md).
  void clamp_hugepage(Command* c) {
    if (c->advice != script::Advice::kHugepage && c->advice != script::Advice::kNohugepage) return;
    if (c->len >= 512 * kPage) c->len = rng_.between(1, 511) * kPage;
    if (c->advice == script::Advice::kHugepage && regular_file_made_) c->advice = script::Advice::kNohugepage;
  }

  // process_madvise from one process into another (or itself), over a range like madvise's.
  void gen_pmadvise(Command* c) {
    gen_madvise(c);
    c->op = Op::kPmadvise;
    c->target = rng_.chance(300) ? c->pid : pick_pid();
  }

  void gen_mremap(Command* c) {
    c->op = Op::kMremap;
    if (!aim(c, 1024)) {
      c->addr = pick_addr();
      c->len = pick_pages() * kPage;
    }
    uint64_t old_pages = c->len / kPage;
    uint64_t r = rng_.below(100);
    if (r < 25) {
      // in place: shrink, grow or same size
      c->new_len = pick_pages() * kPage;
    } else if (r < 30) {
      // maymove alone only when it cannot move (shrink or same size)
      c->remap_flags = script::kRemapMaymove;
      c->new_len = rng_.between(1, old_pages) * kPage;
    } else if (r < 80) {
      c->remap_flags = script::kRemapMaymove | script::kRemapFixed;
      c->new_len = rng_.chance(400) ? c->len : pick_pages() * kPage;
      c->has_new_addr = true;
      c->new_addr = pick_addr();
      if (rng_.chance(50)) c->new_addr = c->addr + rng_.below(4) * kPage;  // overlap: EINVAL
    } else if (r < 95) {
      c->remap_flags = script::kRemapMaymove | script::kRemapFixed | script::kRemapDontunmap;
      c->new_len = rng_.chance(900) ? c->len : pick_pages() * kPage;
      c->has_new_addr = true;
      c->new_addr = pick_addr();
    } else {
      // invalid combinations and the shared-mapping duplicate (old_len 0)
      uint32_t odd[] = {script::kRemapFixed, script::kRemapDontunmap, script::kRemapFixed | script::kRemapDontunmap, 0};
      c->remap_flags = rng_.pick(odd);
      if (c->remap_flags == 0) {
        c->len = 0;
        c->remap_flags = script::kRemapMaymove | script::kRemapFixed;
      }
      c->new_len = pick_pages() * kPage;
      c->has_new_addr = true;
      c->new_addr = pick_addr();
    }
    if (rng_.chance(30)) c->new_len += rng_.between(1, kPage - 1);
    if (rng_.chance(20)) c->new_len = 0;
    if (rng_.chance(40)) c->addr += rng_.between(1, kPage - 1);
    if (c->has_new_addr && rng_.chance(30)) c->new_addr += rng_.between(1, kPage - 1);
    // maymove alone must never grow: the kernel would move the mapping out of the window.
    if (c->remap_flags == script::kRemapMaymove && c->new_len > c->len) c->new_len = c->len;
    if (!c->has_new_addr && rng_.chance(50)) {
      // a NEWADDR without fixed is ignored by Linux
      c->has_new_addr = true;
      c->new_addr = pick_addr();
    }
  }

  // write/read: short spans (at most 64 pages) that straddle mappings, start unaligned,
  // or reach below a growsdown mapping to make the stack expand (or refuse to).
  void gen_access(Command* c, Op op) {
    c->op = op;
    uint64_t r = rng_.below(100);
    if (r < 30) {
      c->len = rng_.between(1, 64);
    } else if (r < 70) {
      c->len = rng_.between(1, 2) * kPage;
    } else if (r < 90) {
      c->len = rng_.between(1, 16) * kPage;
    } else {
      c->len = rng_.between(1, 64) * kPage;
    }
    if (rng_.chance(120) && !growsdown_.empty()) {
      uint64_t g = growsdown_[rng_.below(growsdown_.size())];
      uint64_t d;
      uint64_t k = rng_.below(6);
      if (k == 0) d = rng_.between(1, 64);
      else if (k == 1) d = rng_.between(1, 16) * kPage;
      else if (k == 2) d = (kGuardGapPages + rng_.between(0, 4) - 2) * kPage;
      else if (k == 3) d = rng_.between(1, 2048) * kPage;           // within RLIMIT_STACK
      else if (k == 4) d = (2048 + rng_.between(0, 8) - 4) * kPage;  // around 8 MiB
      else d = rng_.between(1, 3072) * kPage;
      c->addr = g - d;
      if (rng_.chance(300)) c->len = d + rng_.between(0, kPage);  // up to and into the mapping
      if (c->len > 64 * kPage) c->len = 64 * kPage;
    } else if (Command t; aim(&t, 64)) {
      // inside a mapping, from an arbitrary byte, for at most the rest of that piece
      c->addr = t.addr + rng_.below(t.len);
      if (c->len > t.len) c->len = rng_.between(1, t.len);
      if (rng_.chance(200)) c->len += rng_.between(1, 2 * kPage);  // run off the end
      c->len = std::min(c->len, 64 * kPage);
    } else {
      c->addr = pick_addr();
      if (rng_.chance(350)) c->addr += rng_.below(kPage);
    }
    if (op == Op::kWrite) c->seed = rng_.below(1000);
    if (rng_.chance(20)) c->len = 0;
    if (rng_.chance(10)) {
      uint64_t high[] = {host::kTaskSize, 0x800000000000ull, 0xfffffffffffff000ull};
      c->addr = rng_.pick(high);
    }
  }

  void gen_mincore(Command* c) {
    c->op = Op::kMincore;
    if (!aim(c, 4096)) {
      c->addr = pick_addr();
      c->len = rng_.chance(900) ? pick_pages() * kPage : rng_.between(1, 4096) * kPage;
    }
    // A huge length makes the host worker map a large vector for the kernel to refuse:
    // never in a process that locks its future mappings (the vector would be populated).
    const bool future = std::find(future_.begin(), future_.end(), c->pid) != future_.end();
    if (future) {
      if (c->len > 4096 * kPage) c->len = 4096 * kPage;
      return;
    }
    if (rng_.chance(60)) {
      // huge lengths only where the kernel refuses them before producing output
      uint64_t r = rng_.below(4);
      if (r == 0) c->len = 0x800000000000ull;
      else if (r == 1) c->len = 0xfffffffffffff000ull;
      else if (r == 2) c->len = ~uint64_t{0} - c->addr + 1;
      else c->addr = host::kTaskSize, c->len = kTiB;
    } else {
      maybe_edge(c, Terabyte::kRefuse);
    }
  }

  Rng rng_;
  const Weights& weights_;
  std::vector<uint64_t> live_;
  uint64_t next_pid_ = 2;
  std::vector<std::string> files_;
  std::vector<uint64_t> growsdown_;
  std::vector<uint64_t> future_;  // processes that issued mlockall future
  RoughMap mapped_;
  bool regular_file_made_ = false;  // a `file` command is in the script
};

}  // namespace

std::string generate(const Options& o) {
  Generator g(o);
  return g.run(o.commands);
}

Profile parse_profile(std::string_view name) {
  if (name == "anon") return Profile::kAnon;
  if (name == "files") return Profile::kFiles;
  if (name == "all") return Profile::kAll;
  if (name == "lock") return Profile::kLock;
  if (name == "advise") return Profile::kAdvise;
  throw std::invalid_argument("unknown script profile '" + std::string(name) +
                              "' (expected anon, files, all, lock or advise)");
}

}  // namespace mirrormm::gen
