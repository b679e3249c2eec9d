// The dmirror test driver (Linux's lib/test_hmm.c, the kernel half of the HMM self-tests):
// a pretend device with its own memory that mirrors a process through hmm_range_fault,
// migrates the process's pages into its memory and back (migrate_vma_*), takes pages for
// exclusive access, and shows what it sees of the CPU page tables (SNAPSHOT). The model's
// version behaves as test_hmm.ko does through its ioctl interface (test_hmm_uapi.h): the
// same commands, the same cpages and faults counts, the same errors, so that every case of
// tools/testing/selftests/mm/hmm-tests.c can be written against it (tests/hmm_tests_test.cc)
// and from `.mms` scripts (`hmm …`, docs/mms-v2.md).
//
// Devices (DmirrorDriver, the loaded module): four, as DMIRROR_NDEVICES. Devices 0 and 1 are
// MEMORY_DEVICE_PRIVATE (the CPU cannot map their memory: a process's page there is a
// device-private entry, and a CPU access migrates it back); devices 2 and 3 are
// MEMORY_DEVICE_COHERENT (mapped by ordinary PTEs). A device's memory comes in chunks
// (dev_pagemaps) of DmirrorConfig::chunk_pages pages, added when the free pages run out, up
// to max_chunks.
//
// Mirrors (Dmirror, an open file of /dev/hmm_dmirrorN): open binds the mirror to the opening
// process's address space with one interval notifier over the whole user address space; a
// child after fork opens its own. The device page table ("pt") maps page addresses to a
// page and a tag (read-only, writable, or device-exclusive). Its invalidate() drops the
// overlap of every invalidation, under the mirror's mutex (the "update" lock of the HMM
// protocol), except that the device's own migrations (MMU_NOTIFY_MIGRATE with the device as
// owner) leave the entries naming device memory to the migration.
//
// The commands (HmmDmirrorCmd; addr must be page aligned and npages > 0, else -EINVAL; on
// an error the command is not updated, as copy_to_user is then skipped):
//   READ            device read of [addr, +npages): copy the pt pages into ptr; every
//                   missing run is faulted with hmm_range_fault (REQ_FAULT) in chunks of 32
//                   pages, each round counted in faults. -EFAULT / -EPERM / -EBUSY as
//                   hmm_range_fault answers.
//   WRITE           the same with ptr's bytes into the pages, needing writable pt entries
//                   (REQ_FAULT | REQ_WRITE faults); a VMA without VM_WRITE gives -EPERM.
//   MIGRATE_TO_DEV  migrate the range to device memory (SELECT_SYSTEM) VMA by VMA (no VMA or
//                   no VM_READ: -EINVAL), then read it back from pt without faulting into
//                   ptr (-ENOENT when a page is not the device's: shared memory, another
//                   device's page, a failed allocation).
//   MIGRATE_TO_SYS  migrate this device's pages of the range back to system memory; cpages
//                   counts the pages moved.
//   SNAPSHOT        one HMM_DMIRROR_PROT_* byte per page into ptr, from hmm_range_fault
//                   without faulting (a temporary interval notifier per 32 pages).
//   EXCLUSIVE       make_device_exclusive on each page (tagged atomic in pt), then read
//                   back as MIGRATE_TO_DEV does.
//   CHECK_EXCLUSIVE -EPERM while a pt entry of the range is still device-exclusive.
//   RELEASE         evict all of the device's memory (every mirror's pages) to system memory.
//   FLAGS           set the mirror's flags (npages): FAIL_ALLOC makes the next page
//                   allocation of a migration fail, once.
//
// mmap of the device file (dmirror_fops_mmap, Dmirror::mmap): the new VMA is filled with
// zeroed driver pages, one vm_insert_page per page (mirrormm/device_file.h), which makes it
// VM_MIXEDMAP. The driver keeps no reference: the pages live as long as the PTEs (and the
// copies fork makes) map them. hmm-tests' `mixedmap` snapshots such a page: a private
// mapping maps it read-only, so SNAPSHOT reports PROT_READ.
//
// The model maps no huge pages, so no entry is ever PMD or PUD sized, and the driver's
// huge-page paths (MIGRATE_PFN_COMPOUND, the split fallback) do not exist. FAIL_ALLOC then
// fails a base-page allocation: to the device, that page stays behind (-ENOENT from the read
// back); to system memory, the migration answers -ENOMEM, as test_hmm's VM_FAULT_OOM.
//
// Locking (src/mm/lock_order.h): a mirror's close holds its detach lock (the rank of
// DeviceMirror::detach_lock_) for write, commands hold it for read. A device's
// devmem_lock (chunks and open mirrors) ranks right after the page lock: a migration
// allocates a chunk with its source pages locked; eviction runs without it. The free-page
// list's spinlock is a leaf (folio_free is called under page-table locks). The mirror's
// mutex is a DriverLock, ordered by the driver lock checker.
//
// Coherence checker: a pt entry that comes from hmm_range_fault over a present PTE is
// declared (mmu_checker_map) and accessed with device_access_pfn; the device's own memory
// (its pages that a migration or hmm_range_fault's device-private report put in pt) is
// accessed directly, as a device uses its local memory.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mirrormm/base/driver_lock.h"
#include "mirrormm/base/locking.h"
#include "mirrormm/errno.h"
#include "mirrormm/memremap.h"
#include "mirrormm/mmu_notifier.h"
#include "mirrormm/secondary_mmu.h"

namespace mirrormm {

class Process;
class System;
struct File;
struct Vma;
class DmirrorDevice;
struct MigrateVma;

// ---- the UAPI (test_hmm_uapi.h) ----

// struct hmm_dmirror_cmd. ptr is the caller's buffer: npages * 4096 bytes for READ, WRITE,
// MIGRATE_TO_DEV and EXCLUSIVE (ignored when null for the migrations, which Linux would
// answer -EFAULT for), npages bytes for SNAPSHOT.
struct HmmDmirrorCmd {
  uint64_t addr = 0;
  uint8_t* ptr = nullptr;
  uint64_t npages = 0;
  uint64_t cpages = 0;  // out: pages copied, migrated or snapshot
  uint64_t faults = 0;  // out: device fault rounds
};

enum class DmirrorIoctl : unsigned {
  kRead = 0x00,
  kWrite = 0x01,
  kMigrateToDev = 0x02,
  kMigrateToSys = 0x03,
  kSnapshot = 0x04,
  kExclusive = 0x05,
  kCheckExclusive = 0x06,
  kRelease = 0x07,
  kFlags = 0x08,
};

inline constexpr uint64_t HMM_DMIRROR_FLAG_FAIL_ALLOC = 1ull << 0;

// SNAPSHOT bytes.
enum : uint8_t {
  HMM_DMIRROR_PROT_ERROR = 0xFF,
  HMM_DMIRROR_PROT_NONE = 0x00,
  HMM_DMIRROR_PROT_READ = 0x01,
  HMM_DMIRROR_PROT_WRITE = 0x02,
  HMM_DMIRROR_PROT_PMD = 0x04,
  HMM_DMIRROR_PROT_PUD = 0x08,
  HMM_DMIRROR_PROT_ZERO = 0x10,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL = 0x20,
  HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE = 0x30,
  HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL = 0x40,
  HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE = 0x50,
};

struct DmirrorConfig {
  uint64_t chunk_pages = 1024;  // pages per dev_pagemap (Linux: 256 MiB)
  uint64_t max_chunks = 16;     // per device
};

class Dmirror;

// test_hmm.ko loaded into one machine: its four devices. Destroy it after every mirror.
class DmirrorDriver {
 public:
  static constexpr int kNDevices = 4;
  explicit DmirrorDriver(System* sys, DmirrorConfig config = {});
  ~DmirrorDriver();
  DmirrorDriver(const DmirrorDriver&) = delete;
  DmirrorDriver& operator=(const DmirrorDriver&) = delete;

  // open("/dev/hmm_dmirrorDEV") by p: -ENODEV for DEV outside 0..3, -ESRCH when p has
  // exited, the notifier registration's errno otherwise.
  Result<std::unique_ptr<Dmirror>> open(int dev, Process* p);
  // MEMORY_DEVICE_PRIVATE for devices 0 and 1, MEMORY_DEVICE_COHERENT for 2 and 3.
  static MemoryType device_type(int dev) { return dev < 2 ? MEMORY_DEVICE_PRIVATE : MEMORY_DEVICE_COHERENT; }
  // Device pages currently allocated (in use by a process or a migration) on device DEV.
  uint64_t debug_pages_in_use(int dev);

 private:
  System* const sys_;
  std::array<std::unique_ptr<DmirrorDevice>, kNDevices> devices_;  // written once
};

// One open file of a device. Thread-safe: commands may run concurrently with each other,
// with close() and with anything the mirrored process does, including exit.
class Dmirror {
 public:
  ~Dmirror();
  Dmirror(const Dmirror&) = delete;
  Dmirror& operator=(const Dmirror&) = delete;

  // The ioctl: kOk and cmd updated, or an errno and cmd unchanged. -EBADF after close().
  Errno ioctl(DmirrorIoctl op, HmmDmirrorCmd* cmd);
  // release(): the notifier goes, then the device's memory is evicted to system memory
  // (test_hmm's dmirror_fops_release). Idempotent; the destructor calls it.
  void close();
  // mmap(2) of this open file by p (whose descriptor table holds it: the opener or a fork
  // child): mmap's result, or -EBADF after close(). The file stays open for the mapping's
  // life in Linux; here its VMAs keep the file (and its name in /proc/PID/maps) but never
  // call the driver again. -ENOMEM when the driver runs out of pages (nothing stays mapped).
  Result<uint64_t> mmap(Process* p, uint64_t addr, uint64_t len, uint64_t prot, uint64_t flags, uint64_t off);

  int device() const { return dev_; }
  Mm* mm() const { return mm_; }

  // For the SecondaryMmu adapter and tests: the pt as SecondaryMmu::show prints it ('-'
  // none, 'r' read-only, 'w' writable or device-exclusive), the pages in pt, the device
  // side of a DMA through pt (false at the first page missing, or not writable for a
  // write), the notifications and counts.
  std::string show(uint64_t addr, uint64_t len);
  uint64_t pages_mapped();
  bool dma(uint64_t addr, uint64_t len, uint8_t* buf, bool write);
  std::vector<SecondaryMmu::Event> take_events();
  SecondaryMmu::Stats stats();
  void set_name(const std::string& name);
  // dmirror_fault: fault [start, end) (page aligned) into pt, as READ and WRITE do on a miss.
  Errno fault(uint64_t start, uint64_t end, bool write);

 private:
  friend class DmirrorDriver;
  friend class DmirrorDevice;
  enum class Tag : uint8_t { kRead, kWrite, kAtomic };  // DPT_XA_TAG_*
  struct PtEntry {
    uint64_t pfn = 0;
    Tag tag = Tag::kRead;
    bool declared = false;  // declared to the coherence checker (a CPU-mapped page)
  };
  struct Interval : MmuIntervalNotifier {
    Dmirror* owner = nullptr;
  };

  Dmirror(DmirrorDevice* mdevice, int dev, Mm* mm);
  // dmirror_fops_mmap, the file's DeviceFileOps::mmap.
  static Errno fops_mmap(File* file, Vma* vma, uint64_t start, uint64_t end);
  static bool invalidate(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq);

  // The commands, with detach_lock_ held for read and cmd a private copy.
  Errno do_read_cmd(HmmDmirrorCmd* cmd, bool write) REQUIRES_SHARED(detach_lock_);
  Errno migrate_to_device(HmmDmirrorCmd* cmd) REQUIRES_SHARED(detach_lock_);
  Errno migrate_to_system(HmmDmirrorCmd* cmd) REQUIRES_SHARED(detach_lock_);
  Errno snapshot(HmmDmirrorCmd* cmd) REQUIRES_SHARED(detach_lock_);
  Errno exclusive(HmmDmirrorCmd* cmd) REQUIRES_SHARED(detach_lock_);
  Errno check_exclusive(HmmDmirrorCmd* cmd) REQUIRES_SHARED(detach_lock_);
  Errno read_back(HmmDmirrorCmd* cmd) EXCLUDES(mutex_);
  Errno migrate_range(uint64_t start, uint64_t end, unsigned select,
                      const std::function<Errno(MigrateVma*)>& step) EXCLUDES(mutex_);
  // One hmm_range_fault round loop over [start, end) (at most 32 pages), programming pt.
  Errno range_fault(uint64_t start, uint64_t end, bool write);
  // Copies pt pages of [start, end) to or from buf (dmirror_do_read / dmirror_do_write):
  // -ENOENT at the first page missing (or not writable for a write); *done counts pages.
  Errno copy_locked(uint64_t start, uint64_t end, uint8_t* buf, bool write, uint64_t* done) REQUIRES(mutex_);
  void store_locked(uint64_t addr, const PtEntry& e) REQUIRES(mutex_);
  // Erases the entries of [start, end): all of them, or only those naming CPU-mapped pages.
  enum class Which { kAll, kCpuMapped };
  void erase_locked(uint64_t start, uint64_t end, Which which = Which::kAll) REQUIRES(mutex_);
  // Erases the entries of pt that name a page of pgmap (its chunk is going away).
  void forget_pgmap(const DevPagemap* pgmap);
  // Holds the mm reference the command needs (mmget_not_zero) for [addr, end).
  Errno fault_range(uint64_t start, uint64_t end, bool write) REQUIRES_SHARED(detach_lock_);
  bool take_fail_alloc();

  DmirrorDevice* const mdevice_;  // the driver outlives its mirrors
  const int dev_;
  Mm* const mm_;  // kept alive by the notifier's mm reference while attached
  Interval notifier_;
  // The open file of /dev/hmm_dmirrorN (its private_data is this mirror); written once at
  // open, put by the destructor (VMAs that map it hold their own references).
  File* file_ = nullptr;
  // Commands hold it for read, close() for write.
  RwSem detach_lock_;
  bool attached_ GUARDED_BY(detach_lock_) = false;
  std::atomic<uint64_t> flags_{0};  // FLAGS; FAIL_ALLOC is consumed atomically

  // dmirror->mutex: pt, the log. Taken by invalidate() and around read_retry.
  DriverLock mutex_{"dmirror->mutex"};
  std::map<uint64_t, PtEntry> pt_ GUARDED_BY(mutex_);
  SecondaryMmuLog log_ GUARDED_BY(mutex_);
};

// The "dmirror" kind of the SecondaryMmu registry (built in): a mirror of device 0 of a
// driver of its own, over the whole address space (the span is ignored); fault() is
// dmirror_fault, read() and write() go through pt.
SecondaryMmuKind dmirror_secondary_mmu_kind();

}  // namespace mirrormm
