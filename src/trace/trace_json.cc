// The Chrome/Perfetto trace-event writer (the JSON object format; docs/tracing.md lists what
// it writes).
#include <fmt/format.h>

#include "trace/recorder.h"

namespace mirrormm::trace {

namespace {

constexpr int kPidCpus = 1, kPidDevices = 2;

// Microseconds with nanosecond precision, as the format's "ts" and "dur" want them.
std::string us(uint64_t ns) { return fmt::format("{}.{:03}", ns / 1000, ns % 1000); }

void write_args(fmt::memory_buffer& out, const Placed& p, const std::vector<std::string>& subscribers) {
  const Record& r = p.rec;
  switch (r.kind) {
    case Kind::kCpuFault:
      fmt::format_to(std::back_inserter(out), R"("address":"{:#x}","write":{},"result":"{}")", r.a,
                     r.b ? "true" : "false", fault_result(r.c));
      break;
    case Kind::kDeviceFault:
      fmt::format_to(std::back_inserter(out), R"("address":"{:#x}","length":{},"write":{},"subscriber":"{}")", r.a,
                     r.b, r.c ? "true" : "false", json_escape(subscribers[p.identity]));
      break;
    case Kind::kInvalidate:
      fmt::format_to(std::back_inserter(out),
                     R"("start":"{:#x}","end":"{:#x}","event":"{}","subscriber":"{}","blockable":{})", r.a, r.b,
                     invalidate_event_name(r.c), json_escape(subscribers[p.identity]),
                     (r.c & 0x100) ? "true" : "false");
      break;
    case Kind::kShootdown:
      fmt::format_to(std::back_inserter(out), R"("start":"{:#x}","end":"{:#x}","cpus":{})", r.a, r.b, r.c);
      break;
    case Kind::kSubscriberName: break;
  }
}

}  // namespace

void Recorder::write_json(std::ostream& os) const {
  const Merged& m = impl_->merged;
  fmt::memory_buffer out;
  auto flush = [&] {
    os.write(out.data(), static_cast<std::streamsize>(out.size()));
    out.clear();
  };
  fmt::format_to(std::back_inserter(out), "{{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
  bool first = true;
  auto sep = [&] {
    if (!first) fmt::format_to(std::back_inserter(out), ",\n");
    first = false;
  };
  // Metadata: the two processes, then every track, named and in order.
  for (const auto& [pid, name] : {std::pair{kPidCpus, "CPUs"}, std::pair{kPidDevices, "secondary MMUs"}}) {
    sep();
    fmt::format_to(std::back_inserter(out),
                   R"({{"name":"process_name","ph":"M","pid":{},"tid":0,"args":{{"name":"{}"}}}})", pid, name);
    sep();
    fmt::format_to(std::back_inserter(out),
                   R"({{"name":"process_sort_index","ph":"M","pid":{},"tid":0,"args":{{"sort_index":{}}}}})", pid, pid);
  }
  // The counters' track (pid 1, tid 0) is named too, so that every tid has a name.
  sep();
  fmt::format_to(std::back_inserter(out),
                 R"({{"name":"thread_name","ph":"M","pid":{},"tid":0,"args":{{"name":"memory"}}}})", kPidCpus);
  for (const Merged::Track& t : m.tracks) {
    sep();
    fmt::format_to(std::back_inserter(out),
                   R"({{"name":"thread_name","ph":"M","pid":{},"tid":{},"args":{{"name":"{}"}}}})", t.pid, t.tid,
                   json_escape(t.name));
    sep();
    fmt::format_to(std::back_inserter(out),
                   R"({{"name":"thread_sort_index","ph":"M","pid":{},"tid":{},"args":{{"sort_index":{}}}}})", t.pid,
                   t.tid, t.tid);
  }
  for (const Placed& p : m.spans) {
    sep();
    const Record& r = p.rec;
    const std::string name = r.kind == Kind::kInvalidate ? "invalidate " + invalidate_event_name(r.c) : kind_name(r.kind);
    fmt::format_to(std::back_inserter(out), R"({{"name":"{}","cat":"{}","ph":"X","pid":{},"tid":{},"ts":{},"dur":{},"args":{{)",
                   name, p.pid == kPidDevices ? "device" : "cpu", p.pid, p.tid, us(r.t0), us(r.t1 - r.t0));
    write_args(out, p, m.subscribers);
    fmt::format_to(std::back_inserter(out), "}}}}");
    if (out.size() > (1 << 20)) flush();
  }
  for (const MemorySample& s : m.samples) {
    sep();
    fmt::format_to(std::back_inserter(out),
                   R"j({{"name":"memory (pages)","ph":"C","pid":{},"tid":0,"ts":{},"args":{{"free":{},"anon":{},"file":{},"swap_used":{}}}}})j",
                   kPidCpus, us(s.t), s.free, s.anon, s.file, s.swap_used);
  }
  fmt::format_to(std::back_inserter(out),
                 "\n],\"otherData\":{{\"producer\":\"mirrormm\",\"events\":{},\"dropped\":{}}}}}\n", m.events,
                 m.dropped);
  flush();
  os.flush();
}

}  // namespace mirrormm::trace
