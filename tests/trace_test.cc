// Tracing (src/trace/): the trace-event JSON of a traced workload checked against the
// Chrome/Perfetto trace-event format (docs/tracing.md), the spans a known sequence of faults,
// device faults, invalidations and shootdowns records, the per-thread limit, and the HTML
// report's data.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "mirrormm/device_mirror.h"
#include "mirrormm/replay.h"
#include "mirrormm/script.h"
#include "mirrormm/stress.h"
#include "mirrormm/system.h"
#include "mirrormm/trace.h"
#include "mm_test_util.h"

namespace mirrormm {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::P;
using testing::PRIV;
using testing::RW;
using testing::W;

// What a trace holds, by kind, after the format checks.
struct Checked {
  std::map<std::pair<int64_t, int64_t>, std::string> track_names;  // (pid, tid) -> thread_name
  std::vector<json> spans;                                         // complete events
  size_t counters = 0;
};

uint64_t hex(const json& v) { return std::stoull(v.get<std::string>(), nullptr, 16); }

// The track's name without its lane suffix (" #2": a second lane of overlapping spans).
std::string base_name(const std::string& track) {
  const size_t hash = track.rfind(" #");
  return hash == std::string::npos ? track : track.substr(0, hash);
}

// Checks every event of the trace against the trace-event format and mirrormm's use of it
// (docs/tracing.md); returns what it holds.
Checked check_trace_format(const std::string& text) {
  Checked out;
  const json doc = json::parse(text);  // throws (fails the test) on malformed JSON
  EXPECT_TRUE(doc.is_object());
  EXPECT_TRUE(doc.at("displayTimeUnit") == "ns" || doc.at("displayTimeUnit") == "ms");
  const json& events = doc.at("traceEvents");
  EXPECT_TRUE(events.is_array());
  std::set<int64_t> named_pids;
  std::set<std::pair<int64_t, int64_t>> used;
  std::map<std::pair<int64_t, int64_t>, std::vector<std::string>> open_b;  // B/E stacks
  std::map<std::pair<int64_t, int64_t>, std::vector<double>> open_x;       // ends of enclosing X
  std::map<std::pair<int64_t, int64_t>, double> last_ts;
  const std::set<std::string> event_names = {"unmap",   "clear",   "protection_vma", "protection_page",
                                             "soft_dirty", "release", "migrate",     "exclusive"};
  for (const json& e : events) {
    SCOPED_TRACE(e.dump());
    EXPECT_TRUE(e.is_object());
    EXPECT_TRUE(e.at("name").is_string());
    EXPECT_TRUE(e.at("pid").is_number_integer());
    EXPECT_TRUE(e.at("tid").is_number_integer());
    const std::string ph = e.at("ph").get<std::string>();
    const std::pair<int64_t, int64_t> track{e.at("pid").get<int64_t>(), e.at("tid").get<int64_t>()};
    if (ph == "M") {
      const std::string name = e.at("name");
      EXPECT_TRUE(name == "process_name" || name == "thread_name" || name == "process_sort_index" ||
                  name == "thread_sort_index");
      if (name == "process_name") named_pids.insert(track.first);
      if (name == "thread_name") {
        EXPECT_TRUE(e.at("args").at("name").is_string());
        EXPECT_FALSE(out.track_names.count(track)) << "a track named twice";
        out.track_names[track] = e.at("args").at("name");
      }
      if (name.ends_with("sort_index")) {
        EXPECT_TRUE(e.at("args").at("sort_index").is_number_integer());
      }
      continue;
    }
    used.insert(track);
    EXPECT_TRUE(e.at("ts").is_number());
    const double ts = e.at("ts").get<double>();
    EXPECT_GE(ts, 0);
    // Per track, events come in time order.
    auto [it, first] = last_ts.emplace(track, ts);
    if (!first) {
      EXPECT_GE(ts, it->second);
      it->second = ts;
    }
    if (ph == "X") {
      EXPECT_TRUE(e.at("dur").is_number());
      const double dur = e.at("dur").get<double>();
      EXPECT_GE(dur, 0);
      EXPECT_TRUE(e.at("args").is_object());
      EXPECT_TRUE(e.at("cat").is_string());
      // Complete events of one track nest or follow each other.
      std::vector<double>& ends = open_x[track];
      while (!ends.empty() && ends.back() <= ts) ends.pop_back();
      if (!ends.empty()) {
        EXPECT_LE(ts + dur, ends.back() + 1e-9) << "partially overlapping spans on one track";
      }
      ends.push_back(ts + dur);
      out.spans.push_back(e);
    } else if (ph == "B") {
      open_b[track].push_back(e.at("name"));
    } else if (ph == "E") {
      EXPECT_FALSE(open_b[track].empty()) << "E without B";
      if (!open_b[track].empty()) open_b[track].pop_back();
    } else if (ph == "C") {
      EXPECT_TRUE(e.at("args").is_object());
      EXPECT_FALSE(e.at("args").empty());
      for (const auto& [k, v] : e.at("args").items()) EXPECT_TRUE(v.is_number()) << k;
      out.counters++;
    } else {
      ADD_FAILURE() << "unknown ph " << ph;
    }
  }
  for (const auto& [track, stack] : open_b) EXPECT_TRUE(stack.empty()) << "B without E";
  for (const auto& track : used) {
    EXPECT_TRUE(out.track_names.count(track)) << "unnamed track " << track.first << "/" << track.second;
    EXPECT_TRUE(named_pids.count(track.first)) << "unnamed process " << track.first;
  }
  // mirrormm's spans and their arguments.
  for (const json& s : out.spans) {
    SCOPED_TRACE(s.dump());
    const std::string name = s.at("name");
    const json& args = s.at("args");
    const std::string track = out.track_names[{s.at("pid").get<int64_t>(), s.at("tid").get<int64_t>()}];
    if (name.starts_with("invalidate ")) {
      EXPECT_EQ(s.at("cat"), "device");
      EXPECT_LT(hex(args.at("start")), hex(args.at("end")));
      EXPECT_TRUE(event_names.count(args.at("event").get<std::string>()));
      EXPECT_EQ(name, "invalidate " + args.at("event").get<std::string>());
      EXPECT_TRUE(args.at("blockable").is_boolean());
      // On the subscriber's own track.
      EXPECT_FALSE(args.at("subscriber").get<std::string>().empty());
      EXPECT_EQ(base_name(track), args.at("subscriber"));
    } else if (name == "device fault") {
      EXPECT_EQ(s.at("cat"), "device");
      hex(args.at("address"));
      EXPECT_GT(args.at("length").get<uint64_t>(), 0u);
      EXPECT_TRUE(args.at("write").is_boolean());
      EXPECT_EQ(base_name(track), args.at("subscriber"));
    } else if (name == "fault") {
      EXPECT_EQ(s.at("cat"), "cpu");
      hex(args.at("address"));
      EXPECT_TRUE(args.at("write").is_boolean());
      EXPECT_TRUE(args.at("result").is_string());
      EXPECT_TRUE(base_name(track).starts_with("CPU ")) << track;
    } else if (name == "tlb shootdown") {
      EXPECT_EQ(s.at("cat"), "cpu");
      EXPECT_LT(hex(args.at("start")), hex(args.at("end")));
      EXPECT_TRUE(args.at("cpus").is_number_integer());
    } else {
      ADD_FAILURE() << "unknown span " << name;
    }
  }
  return out;
}

size_t count_named(const Checked& c, const std::string& name) {
  size_t n = 0;
  for (const json& s : c.spans) n += s.at("name").get<std::string>().starts_with(name);
  return n;
}

// The data object of an HTML report.
json report_data(const std::string& html) {
  const std::string open = "<script type=\"application/json\" id=\"report-data\">";
  const size_t a = html.find(open);
  EXPECT_NE(a, std::string::npos);
  const size_t b = html.find("</script>", a);
  return json::parse(html.substr(a + open.size(), b - a - open.size()));
}

TEST(Trace, TracedStressRunFollowsTheTraceEventFormat) {
  stress::Options o;
  o.threads = 3;
  o.seconds = 0.6;
  o.seed = 7;
  o.memory_mib = 32;
  o.swap_mib = 64;
  std::ostringstream trace_json, report;
  o.trace_json = &trace_json;
  o.report_html = &report;
  const stress::Report r = stress::run(o);
  EXPECT_EQ(r.violations, 0u);
  EXPECT_EQ(trace::active(), nullptr);  // the run's recorder is gone
  const Checked c = check_trace_format(trace_json.str());
  EXPECT_GT(count_named(c, "fault"), 0u);
  EXPECT_GT(count_named(c, "invalidate "), 0u);
  EXPECT_GT(count_named(c, "device fault"), 0u);
  EXPECT_GT(count_named(c, "tlb shootdown"), 0u);
  EXPECT_GT(c.counters, 10u);  // sampled every 10 ms
  // One track per software CPU that faulted, named after it.
  std::set<std::string> cpus;
  for (const auto& [track, name] : c.track_names)
    if (name.starts_with("CPU ")) cpus.insert(base_name(name));
  EXPECT_EQ(cpus, (std::set<std::string>{"CPU 0", "CPU 1", "CPU 2"}));

  // The report: self-contained, with its data.
  const std::string html = report.str();
  EXPECT_THAT(html, HasSubstr("Chart.js v3"));
  EXPECT_THAT(html, Not(HasSubstr("<script src")));
  EXPECT_THAT(html, Not(HasSubstr("<link")));
  const json d = report_data(html);
  EXPECT_FALSE(d.at("memory").empty());
  EXPECT_FALSE(d.at("address_spaces").empty());
  EXPECT_EQ(d.at("address_spaces")[0].at("pid"), 1);
  EXPECT_FALSE(d.at("timeline").at("by_event").empty());
  EXPECT_FALSE(d.at("timeline").at("by_subscriber").empty());
  uint64_t faults = 0;
  for (const json& h : d.at("histograms").at("series"))
    if (h.at("name") == "CPU fault")
      for (const json& n : h.at("counts")) faults += n.get<uint64_t>();
  EXPECT_GE(faults, count_named(c, "fault"));  // the histograms count dropped spans too
}

// A known sequence: a CPU fault, a device fault, then munmap (one invalidation of the
// device and one shootdown).
TEST(Trace, SpansOfAKnownSequence) {
  std::ostringstream out;
  {
    trace::Recorder rec;
    rec.start();
    EXPECT_EQ(trace::active(), &rec);
    {
      System sys(SystemConfig{}, 2);
      sys.set_mmu_checker(true);
      Process* p = sys.process(1);
      ASSERT_TRUE(sys.mmap(p, W, 4 * P, RW, PRIV).ok());
      const AccessResult a = sys.access(p, 1, W + P, 8, true, [](uint8_t* d, uint64_t, uint64_t n) {
        for (uint64_t i = 0; i < n; i++) d[i] = 1;
      });
      ASSERT_EQ(a.kind, AccessResult::Kind::kOk);
      auto m = DeviceMirror::attach(p, DeviceMirror::Mode::kInterval, W, 4 * P);
      ASSERT_TRUE(m.ok());
      m.value()->set_name("gpu0");
      ASSERT_TRUE(m.value()->fault(W + P, P, false).ok());
      ASSERT_TRUE(sys.munmap(p, W, 4 * P).ok());
      m.value()->detach();
    }
    rec.stop();
    EXPECT_EQ(trace::active(), nullptr);
    rec.write_json(out);
  }
  const Checked c = check_trace_format(out.str());
  std::vector<json> cpu_faults, device_faults, invalidations;
  for (const json& s : c.spans) {
    const std::string track = c.track_names.at({s.at("pid").get<int64_t>(), s.at("tid").get<int64_t>()});
    if (s.at("name") == "fault") {
      cpu_faults.push_back(s);
      EXPECT_EQ(base_name(track), "CPU 1");
    }
    if (s.at("name") == "device fault") device_faults.push_back(s);
    if (s.at("name").get<std::string>().starts_with("invalidate ")) invalidations.push_back(s);
  }
  ASSERT_EQ(cpu_faults.size(), 1u);
  EXPECT_EQ(hex(cpu_faults[0].at("args").at("address")), W + P);
  EXPECT_EQ(cpu_faults[0].at("args").at("write"), true);
  EXPECT_EQ(cpu_faults[0].at("args").at("result"), "ok");
  ASSERT_EQ(device_faults.size(), 1u);
  EXPECT_EQ(device_faults[0].at("args").at("subscriber"), "gpu0");
  EXPECT_EQ(hex(device_faults[0].at("args").at("address")), W + P);
  ASSERT_GE(invalidations.size(), 1u);
  const json& unmap = invalidations.back();
  EXPECT_EQ(unmap.at("args").at("event"), "unmap");
  EXPECT_EQ(unmap.at("args").at("subscriber"), "gpu0");
  EXPECT_EQ(hex(unmap.at("args").at("start")), W);
  EXPECT_EQ(hex(unmap.at("args").at("end")), W + 4 * P);
  // The device fault and the invalidation are on one track: the device's.
  EXPECT_EQ(unmap.at("pid"), device_faults[0].at("pid"));
  EXPECT_EQ(unmap.at("tid"), device_faults[0].at("tid"));
  EXPECT_GE(count_named(c, "tlb shootdown"), 1u);
}

TEST(Trace, NothingIsRecordedWithoutARecorder) {
  EXPECT_EQ(trace::active(), nullptr);
  trace::Recorder rec;  // built, never started
  {
    System sys;
    Process* p = sys.process(1);
    ASSERT_TRUE(sys.mmap(p, W, P, RW, PRIV).ok());
    ASSERT_EQ(sys.access(p, 0, W, 1, true, [](uint8_t*, uint64_t, uint64_t) {}).kind, AccessResult::Kind::kOk);
  }
  rec.start();
  rec.stop();
  EXPECT_EQ(rec.events(), 0u);
}

TEST(Trace, ThreadsKeepTheirLimitAndCountTheRest) {
  trace::Recorder rec(/*max_events_per_thread=*/5);
  rec.start();
  {
    System sys;
    Process* p = sys.process(1);
    ASSERT_TRUE(sys.mmap(p, W, 20 * P, RW, PRIV).ok());
    for (uint64_t i = 0; i < 20; i++)
      ASSERT_EQ(sys.access(p, 0, W + i * P, 1, true, [](uint8_t*, uint64_t, uint64_t) {}).kind,
                AccessResult::Kind::kOk);
  }
  rec.stop();
  EXPECT_EQ(rec.events(), 5u);
  EXPECT_GE(rec.dropped(), 15u);  // 20 faults, and the exit's shootdowns
  std::ostringstream html;
  rec.write_report(html, trace::ReportInfo{});
  uint64_t faults = 0;
  const json d = report_data(html.str());
  for (const json& h : d.at("histograms").at("series"))
    if (h.at("name") == "CPU fault")
      for (const json& n : h.at("counts")) faults += n.get<uint64_t>();
  EXPECT_EQ(faults, 20u);
}

TEST(Trace, ReplayReportsAddressSpacesWithDeviceResidency) {
  const std::string text =
      "mmap 0x200000000000 32K rw- private+anon+fixed\n"
      "dev attach gpu interval 0x200000000000 32K\n"
      "write 0x200000000000 16K 1\n"
      "dev fault gpu 0x200000000000 12K read\n";
  std::string error;
  const auto s = script::parse(text, "residency.mms", &error);
  ASSERT_TRUE(s) << error;
  std::ostringstream trace_json, report;
  replay::Options o;
  o.trace_json = &trace_json;
  o.report_html = &report;
  const std::vector<std::string> results = replay::run(*s, o);
  ASSERT_EQ(results.size(), 4u);
  EXPECT_EQ(results[3], "3");
  check_trace_format(trace_json.str());
  const json d = report_data(report.str());
  ASSERT_EQ(d.at("address_spaces").size(), 1u);
  const json& as = d.at("address_spaces")[0];
  ASSERT_EQ(as.at("vmas").size(), 1u);
  EXPECT_EQ(as.at("vmas")[0].at("start"), "0x200000000000");
  EXPECT_EQ(as.at("vmas")[0].at("pages"), 8);
  ASSERT_EQ(as.at("devices").size(), 1u);
  EXPECT_EQ(as.at("devices")[0].at("name"), "dev gpu");
  EXPECT_EQ(as.at("devices")[0].at("pages"), json::array({3}));
  EXPECT_THAT(report.str(), HasSubstr("<title>mirrormm replay residency.mms</title>"));
}

}  // namespace
}  // namespace mirrormm
