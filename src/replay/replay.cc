// Runs `.mms` scripts against the model and formats results as the spec prints them.
#include "mirrormm/replay.h"
#include "mirrormm/bugs.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "mirrormm/mmu_notifier.h"

namespace mirrormm::replay {

namespace {

using script::Command;
using script::Op;

std::string err(Errno e) { return std::string("-") + errno_name(e); }

std::string fault_token(const AccessResult& r) {
  switch (r.kind) {
    case AccessResult::Kind::kOk: return "ok";
    case AccessResult::Kind::kSegv: return "SEGV";
    case AccessResult::Kind::kBus: return "SIGBUS";
    case AccessResult::Kind::kOom: return "SIGKILL";  // the OOM killer
    case AccessResult::Kind::kNoProcess: return "-ESRCH";
  }
  return "?";
}

// dev show/read/write: longest range (a show prints one character per page, a read or write
// moves the bytes through a buffer).
constexpr uint64_t kMaxDevRange = 1ull << 30;
// `dev log` prints range ends at or beyond the end of the user address space as this.
constexpr uint64_t kLogEndCap = 0x800000000000ull;

// One `dev log` entry: "EVENT START-END[ nonblock]", "release" for a classic release(), or
// "secondary_tlbs START-END" for an arch_invalidate_secondary_tlbs call.
std::string format_event(const SecondaryMmu::Event& e) {
  if (e.release) return "release";
  if (e.secondary_tlb)
    return fmt::format("secondary_tlbs {:x}-{:x}", std::min(e.start, kLogEndCap), std::min(e.end, kLogEndCap));
  std::string s = fmt::format("{} {:x}-{:x}", mmu_notify_event_name(e.event), std::min(e.start, kLogEndCap),
                              std::min(e.end, kLogEndCap));
  if (!e.blockable) s += " nonblock";
  return s;
}

// A range the device commands accept: it does not wrap and is at most kMaxDevRange long.
bool dev_range_ok(const Command& c) { return c.len <= kMaxDevRange && c.addr + c.len >= c.addr; }

// Binds the calling thread to a CPU for a scope and restores its previous binding.
class CpuBinding {
 public:
  explicit CpuBinding(int cpu) : saved_(System::bound_cpu()) { System::bind_thread_to_cpu(cpu); }
  ~CpuBinding() { System::bind_thread_to_cpu(saved_); }
  CpuBinding(const CpuBinding&) = delete;
  CpuBinding& operator=(const CpuBinding&) = delete;

 private:
  int saved_;
};

// `vmstat`: NAME=VALUE pairs, every counter or the named ones in the order named.
std::string format_vmstat(const std::vector<std::pair<std::string, uint64_t>>& all,
                          const std::vector<std::string>& names) {
  std::string out;
  auto add = [&out](const std::string& name, uint64_t value) {
    if (!out.empty()) out += ' ';
    out += fmt::format("{}={}", name, value);
  };
  if (names.empty()) {
    for (const auto& [name, value] : all) add(name, value);
    return out;
  }
  for (const std::string& n : names) {
    auto it = std::find_if(all.begin(), all.end(), [&n](const auto& item) { return item.first == n; });
    if (it != all.end()) add(it->first, it->second);
  }
  return out;
}

}  // namespace

Replayer::Replayer(const Options& o) : sys_(std::make_unique<System>(o.config)), inject_(o.inject) {
  if (const bugs::Bug* bug = bugs::find_bug(inject_)) bugs::inject(*sys_, *bug);
}

std::string Replayer::device_kind(const std::string& name) const {
  auto it = devices_.find(name);
  return it == devices_.end() ? std::string() : it->second->kind();
}

Replayer::~Replayer() {
  // Devices first: detaching needs the System (and the mm the subscription keeps alive).
  for (auto& [name, dev] : devices_) dev->detach();
  devices_.clear();
  detached_.clear();
  hmm_mirrors_.clear();
  dmirror_.reset();
  sys_.reset();
}

std::string Replayer::run(const Command& c) {
    // The script's system calls run as CPU 0, the CPU its accesses use, so that per-CPU
    // state (the frame lists, the LRU add batch a fault filled) is the one Linux would see
    // from a single-threaded process.
    CpuBinding cpu0(0);
    if (script::model_only(c)) {
      if (!sys_->mmu_checker()) sys_->set_mmu_checker(true);
      return run_model_only(c);
    }
    System& sys_ = *this->sys_;
    Process* p = sys_.process(c.pid);
    if (!p) return err(Errno::kSrch);
    switch (c.op) {
      case Op::kMmap: {
        Result<uint64_t> r =
            c.has_file ? sys_.mmap_file(p, c.addr, c.len, uint64_t{c.prot}, script::linux_map_flags(c.map_flags), c.name,
                                        c.offset,
                                        (c.map_flags & script::kMapRofd) ? System::FileMode::kReadOnly
                                                                         : System::FileMode::kReadWrite)
                       : sys_.mmap(p, c.addr, c.len, uint64_t{c.prot}, script::linux_map_flags(c.map_flags), nullptr, c.offset);
        return r.ok() ? fmt::format("0x{:x}", r.value()) : err(r.error());
      }
      case Op::kMunmap: {
        Status s = sys_.munmap(p, c.addr, c.len);
        return s.ok() ? "0" : err(s.error());
      }
      case Op::kMprotect: {
        Status s = sys_.mprotect(p, c.addr, c.len, uint64_t{c.prot});
        return s.ok() ? "0" : err(s.error());
      }
      case Op::kWrite: {
        const uint64_t seed = c.seed;
        AccessResult r = sys_.access(p, 0, c.addr, c.len, true, [seed](uint8_t* d, uint64_t a, uint64_t n) {
          for (uint64_t i = 0; i < n; i++) d[i] = script::pattern(a + i, seed);
        });
        return fault_token(r);
      }
      case Op::kRead: {
        uint64_t h = script::kFnvOffset;
        AccessResult r = sys_.access(p, 0, c.addr, c.len, false, [&h](uint8_t* d, uint64_t, uint64_t n) {
          for (uint64_t i = 0; i < n; i++) h = (h ^ d[i]) * script::kFnvPrime;
        });
        if (!r.ok()) return fault_token(r);
        return fmt::format("fnv:{:016x}", h);
      }
      case Op::kMincore: {
        std::vector<uint8_t> vec;
        Status s = sys_.mincore(p, c.addr, c.len, &vec);
        if (!s.ok()) return err(s.error());
        std::string out(vec.size(), '0');
        for (size_t i = 0; i < vec.size(); i++) out[i] = (vec[i] & 1) ? '1' : '0';
        return out;
      }
      case Op::kMaps: {
        Result<std::vector<MapsEntry>> r = sys_.proc_maps(p);
        return r.ok() ? format_maps(r.value()) : err(r.error());
      }
      case Op::kSmaps: {
        Result<std::vector<SmapsEntry>> r = sys_.smaps(p);
        return r.ok() ? format_smaps(r.value()) : err(r.error());
      }
      case Op::kFork: {
        Result<Process*> r = sys_.fork(p);
        return r.ok() ? std::to_string(r.value()->pid()) : err(r.error());
      }
      case Op::kExit:
        sys_.exit(p);
        return "0";
      case Op::kMadvise: {
        Status s = sys_.madvise(p, c.addr, c.len, script::linux_madvise(c.advice));
        return s.ok() ? "0" : err(s.error());
      }
      case Op::kMseal: {
        Status s = sys_.mseal(p, c.addr, c.len, 0);
        return s.ok() ? "0" : err(s.error());
      }
      case Op::kPmadvise: {
        Status s = sys_.process_madvise(p, sys_.process(c.target), c.addr, c.len, script::linux_madvise(c.advice));
        return s.ok() ? "0" : err(s.error());
      }
      case Op::kMremap: {
        Result<uint64_t> r = sys_.mremap(p, c.addr, c.len, c.new_len, script::linux_mremap_flags(c.remap_flags),
                                         c.has_new_addr ? c.new_addr : 0);
        return r.ok() ? fmt::format("0x{:x}", r.value()) : err(r.error());
      }
      case Op::kMemfd: {
        Status s = sys_.memfd(c.name, c.size);
        return s.ok() ? "0" : err(s.error());
      }
      case Op::kTruncate: {
        Status s = sys_.truncate(c.name, c.size);
        return s.ok() ? "0" : err(s.error());
      }
      case Op::kFile: {
        Status s = sys_.file_create(c.name, c.size);
        return s.ok() ? "0" : err(s.error());
      }
      case Op::kMsync: {
        Status s = sys_.msync(p, c.addr, c.len, script::linux_msync_flags(c.msync_flags));
        return s.ok() ? "0" : err(s.error());
      }
      case Op::kFsync: {
        Status s = sys_.fsync(c.name);
        return s.ok() ? "0" : err(s.error());
      }
      case Op::kMlock: {
        Status st = c.mlock_onfault ? sys_.mlock2(p, c.addr, c.len, kMlockOnfault) : sys_.mlock(p, c.addr, c.len);
        return st.ok() ? "0" : err(st.error());
      }
      case Op::kMunlock: {
        Status st = sys_.munlock(p, c.addr, c.len);
        return st.ok() ? "0" : err(st.error());
      }
      case Op::kMlockall: {
        Status st = sys_.mlockall(p, script::linux_mlockall_flags(c.mlockall_flags));
        return st.ok() ? "0" : err(st.error());
      }
      case Op::kMunlockall: {
        Status st = sys_.munlockall(p);
        return st.ok() ? "0" : err(st.error());
      }
      case Op::kMlocked: {
        Result<std::vector<SmapsEntry>> r = sys_.smaps(p);
        return r.ok() ? format_mlocked(r.value()) : err(r.error());
      }
      case Op::kSetrlimit: {
        Result<VmCounts> vm = sys_.vm_counts(p);
        if (!vm.ok()) return err(vm.error());
        const uint64_t pages = c.rlimit == script::Rlimit::kData ? vm.value().data : vm.value().total;
        Status st = sys_.setrlimit(p, script::linux_rlimit(c.rlimit), script::rlimit_bytes(c.rlim_soft, pages << 12),
                                   script::rlimit_bytes(c.rlim_hard, pages << 12));
        return st.ok() ? "0" : err(st.error());
      }
      case Op::kPread: {
        Result<std::vector<uint8_t>> r = sys_.pread(c.name, c.offset, c.len);
        if (!r.ok()) return err(r.error());
        uint64_t h = script::kFnvOffset;
        for (uint8_t b : r.value()) h = (h ^ b) * script::kFnvPrime;
        return fmt::format("fnv:{:016x}", h);
      }
    }
    return "-EINVAL";
}

std::string Replayer::run_model_only(const Command& c) {
  using script::ModelOp;
  if (c.model == ModelOp::kStats) return stats();
  if (c.model == ModelOp::kCheck) return check();
  if (c.model == ModelOp::kVmstat) {
    // The LRU counters count pages on the lists: the add batches go there first.
    sys_->lru_add_drain_all();
    return format_vmstat(sys_->vmstat(), c.names);
  }
  if (c.model == ModelOp::kSwapon) {
    Status st = sys_->swapon(c.size);
    return st.ok() ? "0" : err(st.error());
  }
  if (c.model == ModelOp::kReclaim) return std::to_string(sys_->reclaim(c.len));
  if (c.model == ModelOp::kNodes) {
    Status st = sys_->set_nodes(c.size > 64 ? 0 : static_cast<int>(c.size));
    return st.ok() ? "0" : err(st.error());
  }
  if (c.model == ModelOp::kMigrate) {
    Process* p = sys_->process(c.pid);
    if (!p) return err(Errno::kSrch);
    Result<uint64_t> r = sys_->migrate_pages(p, c.addr, c.len, c.size >= 64 ? -1 : static_cast<int>(c.size));
    return r.ok() ? std::to_string(r.value()) : err(r.error());
  }
  if (c.model == ModelOp::kPageinfo) {
    Process* p = sys_->process(c.pid);
    if (!p) return err(Errno::kSrch);
    sys_->lru_add_drain_all();
    Result<PageInfo> r = sys_->pageinfo(p, c.addr);
    return r.ok() ? format_pageinfo(r.value()) : err(r.error());
  }
  if (c.model >= ModelOp::kHmmOpen) return run_hmm(c);
  auto it = devices_.find(c.name);
  if (c.model == ModelOp::kDevAttach) {
    const bugs::Bug* bug = bugs::find_bug(inject_);
    auto kind_of = [bug](const std::string& kind) { return bug ? bugs::driver_kind(*bug, kind) : kind; };
    Process* p = sys_->process(c.pid);
    if (!p) return err(Errno::kSrch);
    if (it != devices_.end()) return err(Errno::kExist);
    Result<std::unique_ptr<SecondaryMmu>> r =
        c.dev_mode == script::DevMode::kClassic    ? attach_secondary_mmu(kind_of("classic"), p)
        : c.dev_mode == script::DevMode::kInterval ? attach_secondary_mmu(kind_of("interval"), p, c.addr, c.len)
        : c.dev_span                               ? attach_secondary_mmu(kind_of(c.dev_kind), p, c.addr, c.len)
                                                   : attach_secondary_mmu(kind_of(c.dev_kind), p);
    if (!r.ok()) return err(r.error());
    r.value()->set_name("dev " + c.name);
    devices_.emplace(c.name, std::move(r.value()));
    device_pids_[c.name] = c.pid;
    return "0";
  }
  if (it == devices_.end()) return err(Errno::kNoEnt);
  SecondaryMmu& dev = *it->second;
  switch (c.model) {
    case ModelOp::kDevFault: {
      Result<uint64_t> r = dev.fault(c.addr, c.len, c.dev_write);
      return r.ok() ? std::to_string(r.value()) : err(r.error());
    }
    case ModelOp::kDevShow:
      if (!dev_range_ok(c)) return err(Errno::kInval);
      return dev.show(c.addr, c.len);
    case ModelOp::kDevRead: {
      if (!dev_range_ok(c)) return err(Errno::kInval);
      std::vector<uint8_t> data;
      if (!dev.read(c.addr, c.len, &data)) return "DEVFAULT";
      uint64_t h = script::kFnvOffset;
      for (uint8_t b : data) h = (h ^ b) * script::kFnvPrime;
      return fmt::format("fnv:{:016x}", h);
    }
    case ModelOp::kDevWrite: {
      if (!dev_range_ok(c)) return err(Errno::kInval);
      std::vector<uint8_t> data(c.len);
      for (uint64_t i = 0; i < c.len; i++) data[i] = script::pattern(c.addr + i, c.seed);
      return dev.write(c.addr, c.len, data.data()) ? "ok" : "DEVFAULT";
    }
    case ModelOp::kDevLog: {
      std::string out;
      for (const SecondaryMmu::Event& e : dev.take_events()) {
        if (!out.empty()) out += "; ";
        out += format_event(e);
      }
      return out.empty() ? "none" : out;
    }
    case ModelOp::kDevDetach:
      dev.detach();
      detached_.push_back(std::move(it->second));
      devices_.erase(it);
      device_pids_.erase(c.name);
      return "0";
    case ModelOp::kDevBegin: {
      Result<uint64_t> r = dev.fault_begin(c.addr, c.len, c.dev_write);
      return r.ok() ? "0" : err(r.error());
    }
    case ModelOp::kDevWalk: {
      Result<uint64_t> r = dev.fault_walk();
      return r.ok() ? std::to_string(r.value()) : err(r.error());
    }
    case ModelOp::kDevRetry: {
      Result<bool> r = dev.fault_retry();
      return r.ok() ? (r.value() ? "1" : "0") : err(r.error());
    }
    case ModelOp::kDevMap: {
      Result<uint64_t> r = dev.fault_map(!c.dev_unchecked);
      return r.ok() ? std::to_string(r.value()) : err(r.error());
    }
    case ModelOp::kNone:
    case ModelOp::kDevAttach:
    case ModelOp::kStats:
    case ModelOp::kCheck:
    case ModelOp::kVmstat:
    case ModelOp::kPageinfo:
    case ModelOp::kSwapon:
    case ModelOp::kReclaim:
    case ModelOp::kNodes:
    case ModelOp::kMigrate:
    case ModelOp::kHmmOpen:
    case ModelOp::kHmmClose:
    case ModelOp::kHmmRead:
    case ModelOp::kHmmWrite:
    case ModelOp::kHmmMigrate:
    case ModelOp::kHmmMigrateSys:
    case ModelOp::kHmmSnapshot:
    case ModelOp::kHmmExclusive:
    case ModelOp::kHmmCheckExclusive:
    case ModelOp::kHmmRelease:
    case ModelOp::kHmmFailAlloc:
    case ModelOp::kHmmMmap: break;
  }
  return "-EINVAL";
}

namespace {

// The largest NPAGES of an `hmm` command: the script's buffer (1 GiB of data).
constexpr uint64_t kMaxHmmPages = (1ull << 30) / 4096;

uint64_t fnv(const std::vector<uint8_t>& data) {
  uint64_t h = script::kFnvOffset;
  for (uint8_t b : data) h = (h ^ b) * script::kFnvPrime;
  return h;
}

}  // namespace

// `hmm …`: the dmirror driver's open, close and ioctls (docs/mms-v2.md).
std::string Replayer::run_hmm(const Command& c) {
  using script::ModelOp;
  if (!dmirror_) dmirror_ = std::make_unique<DmirrorDriver>(sys_.get());
  if (c.model == ModelOp::kHmmOpen) {
    Process* p = sys_->process(c.pid);
    if (!p) return err(Errno::kSrch);
    Result<std::unique_ptr<Dmirror>> r = dmirror_->open(c.size >= DmirrorDriver::kNDevices ? -1 : static_cast<int>(c.size), p);
    if (!r.ok()) return err(r.error());
    hmm_mirrors_.push_back(std::move(r.value()));
    return std::to_string(hmm_mirrors_.size() - 1);
  }
  if (c.mirror >= hmm_mirrors_.size() || !hmm_mirrors_[c.mirror]) return err(Errno::kBadf);
  if (c.model == ModelOp::kHmmClose) {
    hmm_mirrors_[c.mirror].reset();
    return "0";
  }
  Dmirror& m = *hmm_mirrors_[c.mirror];
  if (c.model == ModelOp::kHmmMmap) {
    Process* p = sys_->process(c.pid);
    if (!p) return err(Errno::kSrch);
    Result<uint64_t> r = m.mmap(p, c.addr, c.len, uint64_t{c.prot}, script::linux_map_flags(c.map_flags), 0);
    return r.ok() ? fmt::format("0x{:x}", r.value()) : err(r.error());
  }
  HmmDmirrorCmd cmd;
  cmd.addr = c.addr;
  cmd.npages = c.len;
  DmirrorIoctl op = DmirrorIoctl::kRead;
  bool data = false;  // the command moves npages pages of data through the buffer
  switch (c.model) {
    case ModelOp::kHmmRead: data = true; break;
    case ModelOp::kHmmWrite: op = DmirrorIoctl::kWrite; data = true; break;
    case ModelOp::kHmmMigrate: op = DmirrorIoctl::kMigrateToDev; data = true; break;
    case ModelOp::kHmmMigrateSys: op = DmirrorIoctl::kMigrateToSys; break;
    case ModelOp::kHmmSnapshot: op = DmirrorIoctl::kSnapshot; break;
    case ModelOp::kHmmExclusive: op = DmirrorIoctl::kExclusive; data = true; break;
    case ModelOp::kHmmCheckExclusive: op = DmirrorIoctl::kCheckExclusive; break;
    case ModelOp::kHmmRelease:
      op = DmirrorIoctl::kRelease;
      cmd.addr = 0;  // any valid range: RELEASE ignores it
      cmd.npages = 1;
      break;
    case ModelOp::kHmmFailAlloc:
      op = DmirrorIoctl::kFlags;
      cmd.addr = 0;
      cmd.npages = HMM_DMIRROR_FLAG_FAIL_ALLOC;
      break;
    default: return err(Errno::kInval);
  }
  // The driver's own checks come first (-EINVAL); then the buffer's size.
  const bool range_ok = !(cmd.addr & 4095) && cmd.npages != 0 && cmd.npages <= (~0ull >> 12) &&
                        cmd.addr < cmd.addr + (cmd.npages << 12);
  if (range_ok && (data || op == DmirrorIoctl::kSnapshot) && cmd.npages > kMaxHmmPages) return err(Errno::kNoMem);
  std::vector<uint8_t> buf;
  if (range_ok && data) buf.resize(cmd.npages * 4096);
  if (range_ok && op == DmirrorIoctl::kSnapshot) buf.resize(cmd.npages);
  if (range_ok && op == DmirrorIoctl::kWrite) {
    for (uint64_t i = 0; i < buf.size(); i++) buf[i] = script::pattern(cmd.addr + i, c.seed);
  }
  cmd.ptr = buf.empty() ? nullptr : buf.data();
  if (Errno e = m.ioctl(op, &cmd); e != Errno::kOk) return err(e);
  switch (op) {
    case DmirrorIoctl::kRead: return fmt::format("cpages={} faults={} fnv:{:016x}", cmd.cpages, cmd.faults, fnv(buf));
    case DmirrorIoctl::kWrite: return fmt::format("cpages={} faults={}", cmd.cpages, cmd.faults);
    case DmirrorIoctl::kMigrateToDev:
    case DmirrorIoctl::kExclusive: return fmt::format("cpages={} fnv:{:016x}", cmd.cpages, fnv(buf));
    case DmirrorIoctl::kMigrateToSys: return fmt::format("cpages={}", cmd.cpages);
    case DmirrorIoctl::kSnapshot: {
      std::string out = fmt::format("cpages={} m=", cmd.cpages);
      for (size_t i = 0; i < buf.size(); i++) out += fmt::format("{}{:02x}", i ? "," : "", buf[i]);
      return out;
    }
    default: return "0";
  }
}

std::string Replayer::stats() {
  uint64_t processes = 0;
  const uint64_t created = sys_->nr_processes_created();
  for (uint64_t pid = 1; pid <= created; pid++) processes += sys_->process(pid) != nullptr;
  uint64_t mirrored = 0, invalidations = 0;
  for (auto& [name, dev] : devices_) {
    mirrored += dev->pages_mapped();
    invalidations += dev->stats().invalidations;
  }
  return fmt::format("processes={} devices={} mirrored={} invalidations={} violations={}", processes,
                     devices_.size(), mirrored, invalidations, sys_->violations());
}

std::string Replayer::check() {
  sys_->debug_check_consistency();
  const uint64_t n = sys_->violations();
  if (n == 0) return "ok";
  std::vector<std::string> messages = sys_->violation_messages();
  std::string out = fmt::format("violations {}", n);
  if (!messages.empty()) {
    std::string first = messages.front();
    for (char& ch : first) {
      if (ch == '\n' || ch == '\r') ch = ' ';  // one result line per command
    }
    out += ": " + first;
  }
  return out;
}

namespace {

// The entries whose VMA (vma_of) intersects the window, each as format prints it, joined by
// "; ", or "none".
template <class Entry, class VmaOf, class Format>
std::string format_window(const std::vector<Entry>& entries, VmaOf vma_of, Format format) {
  std::string out;
  for (const Entry& e : entries) {
    const MapsEntry& v = vma_of(e);
    if (v.end <= script::kWindowStart || v.start >= script::kWindowEnd) continue;
    if (!out.empty()) out += "; ";
    out += format(e);
  }
  return out.empty() ? "none" : out;
}

}  // namespace

std::string format_maps(const std::vector<MapsEntry>& maps) {
  return format_window(maps, [](const MapsEntry& e) -> const MapsEntry& { return e; }, format_maps_entry);
}

std::string format_smaps(const std::vector<SmapsEntry>& smaps) {
  return format_window(smaps, [](const SmapsEntry& e) -> const MapsEntry& { return e.vma; }, format_smaps_entry);
}

std::string format_mlocked(const std::vector<SmapsEntry>& smaps) {
  return format_window(smaps, [](const SmapsEntry& e) -> const MapsEntry& { return e.vma; }, format_mlock_entry);
}

void Replayer::trace_address_spaces(trace::Recorder& rec) {
  const uint64_t created = sys_->nr_processes_created();
  for (uint64_t pid = 1; pid <= created; pid++) {
    Process* p = sys_->process(pid);
    if (!p) continue;
    std::vector<std::pair<std::string, SecondaryMmu*>> devices;
    for (const auto& [name, dev] : devices_)
      if (device_pids_[name] == pid) devices.emplace_back("dev " + name, dev.get());
    rec.add_address_space(trace::address_space(*sys_, p, devices));
  }
}

std::vector<std::string> run(const script::Script& s, const Options& options) {
  // The checker must watch the whole run of a script with secondary MMUs, from its first
  // command.
  Options o = options;
  if (script::uses_model_only(s)) o.config.mmu_checker = true;
  std::vector<std::string> out;
  std::optional<trace::Recorder> rec;
  if (o.trace_json || o.report_html) rec.emplace().start();
  {
    Replayer r(o);
    out.reserve(s.commands.size());
    for (const Command& c : s.commands) {
      out.push_back(r.run(c));
      if (rec) rec->sample_memory(r.system());
    }
    if (rec) r.trace_address_spaces(*rec);
  }
  if (rec) {
    rec->stop();  // the System and its threads are gone
    if (o.trace_json) rec->write_json(*o.trace_json);
    if (o.report_html) {
      trace::ReportInfo info;
      info.title = "mirrormm replay " + s.file;
      info.summary = {{"commands", std::to_string(s.commands.size())}};
      rec->write_report(*o.report_html, info);
    }
  }
  return out;
}

}  // namespace mirrormm::replay
