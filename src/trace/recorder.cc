// The recording side of tracing: per-thread buffers, the hooks' entry points, memory samples,
// and the merge that places every span on a track (mirrormm/trace.h).
#include "trace/recorder.h"

#include <fmt/format.h>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "mirrormm/secondary_mmu.h"
#include "mirrormm/mmu_notifier.h"

namespace mirrormm::trace {

namespace {

std::atomic<uint64_t> next_recorder_id{1};

uint64_t raw_ticks() {
#if defined(__x86_64__)
  return __rdtsc();
#else
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
#endif
}

// The calling thread's buffer of the recorder with this id (a thread records for one
// recorder at a time; a new recorder id makes it register again).
struct ThreadSlot {
  uint64_t recorder_id = 0;
  Buffer* buffer = nullptr;
};
thread_local ThreadSlot tls_slot;

uint64_t vmstat_of(const std::vector<std::pair<std::string, uint64_t>>& vm, const char* name) {
  for (const auto& [n, v] : vm)
    if (n == name) return v;
  return 0;
}

}  // namespace

Recorder::Impl::Impl(uint64_t id, size_t max_events)
    : id(id), max_events(max_events), t0(std::chrono::steady_clock::now()), tick0(raw_ticks()) {}

Buffer* Recorder::Impl::buffer_of_this_thread() {
  if (tls_slot.recorder_id == id) [[likely]]
    return tls_slot.buffer;
  MutexGuard g(threads_lock);
  buffers.push_back(std::make_unique<Buffer>(static_cast<int>(buffers.size())));
  Buffer* b = buffers.back().get();
  tls_slot = {id, b};
  return b;
}

uint64_t now_ticks(const Recorder& r) {
  // The counter is not serializing: a read may come a few cycles early, never before start.
  const uint64_t t = raw_ticks();
  return t > r.impl_->tick0 ? t - r.impl_->tick0 : 0;
}

void record(Recorder& r, const Record& rec) {
  Buffer* b = r.impl_->buffer_of_this_thread();
  const uint64_t ns = rec.t1 - rec.t0;
  SpinGuard g(b->lock);
  switch (rec.kind) {
    case Kind::kCpuFault: b->latencies.cpu_fault.add(ns); break;
    case Kind::kDeviceFault: b->latencies.device_fault.add(ns); break;
    case Kind::kInvalidate: b->latencies.invalidate.add(ns); break;
    case Kind::kShootdown: b->latencies.shootdown.add(ns); break;
    case Kind::kSubscriberName: break;
  }
  if (b->count < r.impl_->max_events) {
    b->push_locked(rec);
  } else {
    b->dropped++;
  }
}

void record_name(Recorder& r, const void* key, const std::string& name) {
  Buffer* b = r.impl_->buffer_of_this_thread();
  Record rec{};
  rec.cpu = -1;
  rec.kind = Kind::kSubscriberName;
  rec.key = key;
  rec.t0 = rec.t1 = now_ticks(r);
  SpinGuard g(b->lock);
  // Names are never dropped: a track without its name would be worse than a missing span.
  rec.name = static_cast<uint32_t>(b->names.size());
  b->names.push_back(name);
  b->push_locked(rec);
}

void Span::begin(Kind kind, const void* key, uint64_t a, uint64_t b, uint32_t c) {
  rec_.kind = kind;
  rec_.key = key;
  rec_.a = a;
  rec_.b = b;
  rec_.c = c;
  rec_.name = 0;
  rec_.cpu = static_cast<int16_t>(System::bound_cpu());
  rec_.t0 = now_ticks(*r_);
}

void Span::end() {
  rec_.t1 = now_ticks(*r_);
  record(*r_, rec_);
}

Recorder::Recorder(size_t max_events_per_thread)
    : impl_(std::make_unique<Impl>(next_recorder_id.fetch_add(1, std::memory_order_relaxed), max_events_per_thread)) {}

Recorder::~Recorder() { stop(); }

void Recorder::start() {
  if (impl_->state != Impl::State::kIdle) {
    std::fprintf(stderr, "trace: a recorder can only be started once\n");
    std::abort();
  }
  Recorder* expected = nullptr;
  if (!detail::active.compare_exchange_strong(expected, this, std::memory_order_acq_rel)) {
    std::fprintf(stderr, "trace: another recorder is already recording\n");
    std::abort();
  }
  impl_->state = Impl::State::kRecording;
}

void Recorder::stop() {
  if (impl_->state != Impl::State::kRecording) return;
  Recorder* expected = this;
  detail::active.compare_exchange_strong(expected, nullptr, std::memory_order_acq_rel);
  impl_->state = Impl::State::kStopped;
  const uint64_t ticks = now_ticks(*this);
  const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - impl_->t0).count();
  if (ticks > 0 && ns > 0) impl_->ns_per_tick = ns / static_cast<double>(ticks);
  impl_->merge();
}

void Recorder::sample_memory(System& sys) {
  const auto vm = sys.vmstat();
  const SwapStats ss = sys.swap_stats();
  MemorySample s;
  s.t = now_ticks(*this);
  s.free = vmstat_of(vm, "nr_free_pages");
  s.anon = vmstat_of(vm, "nr_inactive_anon") + vmstat_of(vm, "nr_active_anon");
  s.file = vmstat_of(vm, "nr_inactive_file") + vmstat_of(vm, "nr_active_file");
  s.swap_used = ss.used;
  MutexGuard g(impl_->threads_lock);
  impl_->samples.push_back(s);
}

void Recorder::add_address_space(AddressSpace as) {
  MutexGuard g(impl_->threads_lock);
  impl_->address_spaces.push_back(std::move(as));
}

uint64_t Recorder::events() const { return impl_->merged.events; }
uint64_t Recorder::dropped() const { return impl_->merged.dropped; }

AddressSpace address_space(System& sys, Process* p,
                           const std::vector<std::pair<std::string, SecondaryMmu*>>& devices) {
  AddressSpace as;
  if (!p) return as;
  as.pid = p->pid();
  Result<std::vector<MapsEntry>> maps = sys.proc_maps(p);
  if (!maps.ok()) return as;
  as.vmas = std::move(maps.value());
  for (const auto& [name, m] : devices) {
    AddressSpace::Device d;
    d.name = name;
    for (const MapsEntry& v : as.vmas) {
      const std::string shown = m->show(v.start, v.end - v.start);
      d.pages.push_back(static_cast<uint64_t>(shown.size() - std::count(shown.begin(), shown.end(), '-')));
    }
    as.devices.push_back(std::move(d));
  }
  return as;
}

// ---- the merge ----

namespace {

// A subscriber's names over time: the naming records of one key, in time order.
struct Naming {
  uint64_t t;
  std::string name;
};

// Places spans of one logical track on lanes so that the spans of each lane nest or follow
// each other (what the trace-event viewers expect of one thread's complete events): each
// span goes to the first lane whose innermost open span contains it or has ended.
class LanePacker {
 public:
  int place(uint64_t t0, uint64_t t1) {
    for (size_t i = 0;; i++) {
      if (i == lanes_.size()) lanes_.emplace_back();
      std::vector<uint64_t>& open = lanes_[i];  // end times of the lane's open spans
      while (!open.empty() && open.back() <= t0) open.pop_back();
      if (open.empty() || t1 <= open.back()) {
        open.push_back(t1);
        return static_cast<int>(i);
      }
    }
  }

 private:
  std::vector<std::vector<uint64_t>> lanes_;
};

}  // namespace

void Recorder::Impl::merge() {
  Merged& m = merged;
  m.ns_per_tick = ns_per_tick;
  std::vector<Record> all;
  std::map<const void*, std::vector<Naming>> namings;
  {
    MutexGuard g(threads_lock);
    // Threads that ran as no CPU get a track each: their buffer index.
    std::vector<std::pair<Record, int>> tagged;
    for (const auto& b : buffers) {
      SpinGuard bg(b->lock);
      m.dropped += b->dropped;
      m.latencies.merge(b->latencies);
      for (size_t i = 0; i < b->count; i++) {
        const Record& r = b->at_locked(i);
        if (r.kind == Kind::kSubscriberName) {
          namings[r.key].push_back({ns(r.t0), b->names[r.name]});
          continue;
        }
        tagged.emplace_back(r, b->index);
      }
    }
    m.samples = samples;
    for (MemorySample& s : m.samples) s.t = ns(s.t);
    m.address_spaces = address_spaces;
    std::sort(tagged.begin(), tagged.end(), [](const auto& x, const auto& y) {
      return x.first.t0 != y.first.t0 ? x.first.t0 < y.first.t0 : x.first.t1 > y.first.t1;
    });
    m.events = tagged.size();
    for (auto& n : namings)
      std::stable_sort(n.second.begin(), n.second.end(), [](const Naming& x, const Naming& y) { return x.t < y.t; });

    // Logical tracks: CPUs, threads that run as no CPU, and subscribers by identity.
    enum : int { kPidCpus = 1, kPidDevices = 2 };
    std::map<std::string, int> identity_of;  // subscriber track name -> index
    std::map<std::pair<int, int>, LanePacker> packers;  // (pid, logical) -> lanes
    std::map<std::tuple<int, int, int>, int> tid_of;  // (pid, logical, lane) -> tid
    std::map<std::pair<int, int>, int> next_tid;
    auto subscriber_name = [&](const void* key, uint64_t t) {
      auto it = namings.find(key);
      if (it != namings.end()) {
        const std::vector<Naming>& v = it->second;
        // The last name given at or before t; a subscriber named only after it started
        // (attach registers, then names) takes its first name after t.
        auto after = std::upper_bound(v.begin(), v.end(), t, [](uint64_t x, const Naming& n) { return x < n.t; });
        if (after != v.begin() && !std::prev(after)->name.empty()) return std::prev(after)->name;
        if (after != v.end() && !after->name.empty()) return after->name;
      }
      return fmt::format("subscriber {}", key);
    };
    for (auto& [r, buffer_index] : tagged) {
      r.t0 = ns(r.t0);
      r.t1 = ns(r.t1);
      Placed p;
      p.rec = r;
      int logical;
      std::string track_name;
      if (r.kind == Kind::kDeviceFault || r.kind == Kind::kInvalidate) {
        p.pid = kPidDevices;
        const std::string name = subscriber_name(r.key, r.t0);
        auto [it, inserted] = identity_of.emplace(name, static_cast<int>(m.subscribers.size()));
        if (inserted) m.subscribers.push_back(name);
        p.identity = it->second;
        logical = it->second;
        track_name = name;
      } else {
        p.pid = kPidCpus;
        // CPUs first (logical = cpu), then threads as no CPU (logical = 1000 + buffer index).
        logical = r.cpu >= 0 ? r.cpu : 1000 + buffer_index;
        track_name = r.cpu >= 0 ? fmt::format("CPU {}", r.cpu) : fmt::format("thread {} (no CPU)", buffer_index);
      }
      const int lane = packers[{p.pid, logical}].place(r.t0, r.t1);
      auto [tit, new_track] = tid_of.emplace(std::make_tuple(p.pid, logical, lane), 0);
      if (new_track) {
        // CPU tracks keep tid = CPU + 1 on their first lane, so that they sort by CPU.
        int tid;
        if (p.pid == kPidCpus && lane == 0 && logical < 1000) {
          tid = logical + 1;
        } else {
          int& nt = next_tid[{p.pid, 0}];
          tid = (p.pid == kPidCpus ? 1000 : 1) + nt++;
        }
        tit->second = tid;
        m.tracks.push_back({p.pid, tid, lane ? fmt::format("{} #{}", track_name, lane + 1) : track_name});
      }
      p.tid = tit->second;
      m.duration_ns = std::max(m.duration_ns, r.t1);
      m.spans.push_back(p);
    }
    for (const MemorySample& s : m.samples) m.duration_ns = std::max(m.duration_ns, s.t);
  }
  std::sort(m.tracks.begin(), m.tracks.end(),
            [](const Merged::Track& x, const Merged::Track& y) { return std::tie(x.pid, x.tid) < std::tie(y.pid, y.tid); });
}

// ---- names ----

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kCpuFault: return "fault";
    case Kind::kDeviceFault: return "device fault";
    case Kind::kInvalidate: return "invalidate";
    case Kind::kShootdown: return "tlb shootdown";
    case Kind::kSubscriberName: return "name";
  }
  return "?";
}

std::string invalidate_event_name(uint32_t c) {
  const uint32_t e = c & 0xff;
  if (e > static_cast<uint32_t>(MmuNotifyEvent::kExclusive)) return fmt::format("event {}", e);
  return mmu_notify_event_name(static_cast<MmuNotifyEvent>(e));
}

std::string fault_result(uint32_t vm_fault) {
  // The VM_FAULT_* bits of src/mm/internal.h.
  static constexpr std::pair<uint32_t, const char*> kBits[] = {
      {1u << 0, "oom"}, {1u << 1, "sigbus"}, {1u << 2, "sigsegv"}, {1u << 3, "retry"}};
  std::string s;
  for (const auto& [bit, name] : kBits)
    if (vm_fault & bit) s += s.empty() ? name : std::string("|") + name;
  return s.empty() ? "ok" : s;
}

std::string json_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (const unsigned char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '<': out += "\\u003c"; break;  // safe inside an HTML <script> element too
      default:
        if (ch < 0x20) {
          out += fmt::format("\\u{:04x}", ch);
        } else {
          out += static_cast<char>(ch);
        }
    }
  }
  return out;
}

}  // namespace mirrormm::trace
