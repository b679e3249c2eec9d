// The HTML report: one self-contained page (no network, no other file) with the run's
// summary and four plots drawn by Chart.js, which is embedded into the library at build time
// (cmake/embed_chart_js.cmake). The page gets its data as one JSON object in a
// <script type="application/json"> element; docs/tracing.md describes the plots.
//
// Errors of the page itself (a script error, a rejected promise, console.error) are written
// into it: each as a line "REPORT-ERROR: ..." in the #errors element, and the #report-status
// element ends as "report-rendered" only when every plot was drawn without one. A headless
// browser's --dump-dom shows both (scripts/check-report.sh).
#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "trace/recorder.h"

namespace mirrormm::trace {

namespace embedded {
extern const char* const kChartJsVersion;
extern const char* const kChartJsPieces[];
}  // namespace embedded

const char* chart_js_version() { return embedded::kChartJsVersion; }

const char* chart_js_source() {
  static const std::string* whole = [] {
    auto* s = new std::string();  // never destroyed: reports may be written at exit
    for (const char* const* p = embedded::kChartJsPieces; *p; ++p) *s += *p;
    return s;
  }();
  return whole->c_str();
}

namespace {

constexpr int kTimelineBins = 100;
constexpr size_t kMaxSubscriberSeries = 12;  // the rest are summed as "other subscribers"
constexpr size_t kMaxVmasPerProcess = 200;   // the largest are kept

std::string q(const std::string& s) {
  std::string out = "\"";
  out += json_escape(s);
  out += '"';
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (const char ch : s) {
    switch (ch) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += ch;
    }
  }
  return out;
}

template <class T, class F>
std::string array(const std::vector<T>& v, F f) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); i++) {
    if (i) s += ',';
    s += f(v[i]);
  }
  s += ']';
  return s;
}

std::string numbers(const std::vector<uint64_t>& v) {
  return array(v, [](uint64_t x) { return std::to_string(x); });
}

std::string perms(const MapsEntry& e) {
  return std::string(e.read ? "r" : "-") + (e.write ? "w" : "-") + (e.exec ? "x" : "-") + (e.shared ? "s" : "p");
}

std::string vma_name(const MapsEntry& e) {
  switch (e.backing) {
    case MapsEntry::Backing::kAnon: return "anonymous";
    case MapsEntry::Backing::kSharedAnon: return "shared anonymous";
    case MapsEntry::Backing::kFile: return e.file;
  }
  return "";
}

std::string address_spaces_json(const std::vector<AddressSpace>& spaces) {
  return array(spaces, [](const AddressSpace& as) {
    // The largest VMAs if there are too many to draw, shown in address order.
    std::vector<size_t> keep(as.vmas.size());
    for (size_t i = 0; i < keep.size(); i++) keep[i] = i;
    if (keep.size() > kMaxVmasPerProcess) {
      std::stable_sort(keep.begin(), keep.end(), [&](size_t a, size_t b) {
        return as.vmas[a].end - as.vmas[a].start > as.vmas[b].end - as.vmas[b].start;
      });
      keep.resize(kMaxVmasPerProcess);
      std::sort(keep.begin(), keep.end());
    }
    std::string vmas = array(keep, [&](size_t i) {
      const MapsEntry& e = as.vmas[i];
      return fmt::format(R"({{"start":"{:#x}","end":"{:#x}","perms":"{}","name":{},"pages":{}}})", e.start, e.end,
                         perms(e), q(vma_name(e)), (e.end - e.start) >> 12);
    });
    std::string devices = array(as.devices, [&](const AddressSpace::Device& d) {
      std::vector<uint64_t> pages;
      for (size_t i : keep) pages.push_back(i < d.pages.size() ? d.pages[i] : 0);
      return fmt::format(R"({{"name":{},"pages":{}}})", q(d.name), numbers(pages));
    });
    return fmt::format(R"({{"pid":{},"vmas_total":{},"vmas":{},"devices":{}}})", as.pid, as.vmas.size(), vmas,
                       devices);
  });
}

// Invalidations per time bin, by event and by subscriber.
std::string timeline_json(const Merged& m) {
  const uint64_t bin_ns = std::max<uint64_t>(1, (m.duration_ns + kTimelineBins - 1) / kTimelineBins);
  std::map<std::string, std::vector<uint64_t>> by_event;
  std::vector<std::vector<uint64_t>> by_sub(m.subscribers.size());
  std::vector<uint64_t> sub_total(m.subscribers.size());
  for (const Placed& p : m.spans) {
    if (p.rec.kind != Kind::kInvalidate) continue;
    const size_t bin = std::min<size_t>(kTimelineBins - 1, p.rec.t0 / bin_ns);
    auto& e = by_event[invalidate_event_name(p.rec.c)];
    if (e.empty()) e.resize(kTimelineBins);
    e[bin]++;
    auto& s = by_sub[p.identity];
    if (s.empty()) s.resize(kTimelineBins);
    s[bin]++;
    sub_total[p.identity]++;
  }
  std::string events = "[";
  for (const auto& [name, bins] : by_event) {
    if (events.size() > 1) events += ',';
    events += fmt::format(R"({{"name":{},"bins":{}}})", q(name), numbers(bins));
  }
  events += ']';
  // The busiest subscribers by name, the others summed.
  std::vector<size_t> order;
  for (size_t i = 0; i < by_sub.size(); i++)
    if (sub_total[i]) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return sub_total[a] > sub_total[b]; });
  std::string subs = "[";
  std::vector<uint64_t> other(kTimelineBins);
  bool any_other = false;
  for (size_t k = 0; k < order.size(); k++) {
    if (k < kMaxSubscriberSeries) {
      if (subs.size() > 1) subs += ',';
      subs += fmt::format(R"({{"name":{},"bins":{}}})", q(m.subscribers[order[k]]), numbers(by_sub[order[k]]));
    } else {
      any_other = true;
      for (int b = 0; b < kTimelineBins; b++) other[b] += by_sub[order[k]][b];
    }
  }
  if (any_other)
    subs += fmt::format(R"(,{{"name":"{} other subscribers","bins":{}}})", order.size() - kMaxSubscriberSeries,
                        numbers(other));
  subs += "]";
  return fmt::format(R"({{"bin_ms":{:.3f},"bins":{},"by_event":{},"by_subscriber":{}}})", bin_ns / 1e6, kTimelineBins,
                     events, subs);
}

// The histograms with the lower bound of each bucket in nanoseconds.
std::string histograms_json(const Latencies& l, double ns_per_tick) {
  const std::pair<const char*, const Histogram*> all[] = {{"CPU fault", &l.cpu_fault},
                                                         {"device fault", &l.device_fault},
                                                         {"invalidation callback", &l.invalidate},
                                                         {"TLB shootdown", &l.shootdown}};
  std::vector<uint64_t> lower_ns(Histogram::kBuckets);
  for (int i = 1; i < Histogram::kBuckets; i++)
    lower_ns[i] = static_cast<uint64_t>(static_cast<double>(1ull << i) * ns_per_tick);
  return fmt::format(R"({{"lower_ns":{},"series":{}}})", numbers(lower_ns),
                     array(std::vector(std::begin(all), std::end(all)), [](const auto& h) {
                       return fmt::format(R"({{"name":"{}","counts":{}}})", h.first,
                                          numbers(std::vector<uint64_t>(h.second->counts.begin(), h.second->counts.end())));
                     }));
}

std::string samples_json(const std::vector<MemorySample>& v) {
  return array(v, [](const MemorySample& s) {
    return fmt::format(R"([{:.4f},{},{},{},{}])", s.t / 1e9, s.free, s.anon, s.file, s.swap_used);
  });
}

// The page's script: draws the plots from the data object.
constexpr const char* kRenderScript = R"js(
(function () {
  const data = JSON.parse(document.getElementById('report-data').textContent);
  const palette = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7',
                   '#9c755f', '#bab0ac', '#1f77b4', '#d62728', '#2ca02c'];
  const color = (i) => palette[i % palette.length];
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  function canvasIn(parent, height) {
    const box = document.createElement('div');
    box.className = 'plot';
    box.style.height = height + 'px';
    const c = document.createElement('canvas');
    box.appendChild(c);
    document.getElementById(parent).appendChild(box);
    return c;
  }
  function note(parent, text) {
    const p = document.createElement('p');
    p.className = 'note';
    p.textContent = text;
    document.getElementById(parent).appendChild(p);
  }

  // Summary.
  const table = document.getElementById('summary');
  for (const [k, v] of data.summary) {
    const tr = table.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = v;
  }

  // Memory over time.
  if (data.memory.length) {
    const names = ['free frames', 'anonymous (LRU)', 'file (LRU)', 'swap slots used'];
    new Chart(canvasIn('memory', 280), {
      type: 'line',
      data: { datasets: names.map((n, i) => ({ label: n, borderColor: color(i), backgroundColor: color(i),
        pointRadius: 0, borderWidth: 1.5, data: data.memory.map((s) => ({ x: s[0], y: s[i + 1] })) })) },
      options: { scales: { x: { type: 'linear', title: { display: true, text: 'seconds' } },
                           y: { title: { display: true, text: 'pages' }, beginAtZero: true } } },
    });
  } else {
    note('memory', 'No memory samples were taken.');
  }

  // Address-space map.
  if (!data.address_spaces.length) note('map', 'No address space was recorded.');
  for (const as of data.address_spaces) {
    const h = document.createElement('h3');
    h.textContent = 'process ' + as.pid + ': ' + as.vmas_total + ' VMAs' +
        (as.vmas.length < as.vmas_total ? ' (the ' + as.vmas.length + ' largest shown)' : '') +
        ', ' + as.devices.length + ' secondary MMU' + (as.devices.length === 1 ? '' : 's');
    document.getElementById('map').appendChild(h);
    if (!as.vmas.length) continue;
    const labels = as.vmas.map((v) => v.start + '-' + v.end + ' ' + v.perms + ' ' + v.name);
    const datasets = [{ label: 'pages of the VMA', backgroundColor: '#c7c7c7', data: as.vmas.map((v) => v.pages) }];
    as.devices.forEach((d, i) => datasets.push({ label: 'mirrored by ' + d.name, backgroundColor: color(i),
                                                  data: d.pages }));
    new Chart(canvasIn('map', 80 + as.vmas.length * (14 + 6 * as.devices.length)), {
      type: 'bar',
      data: { labels, datasets },
      options: { indexAxis: 'y', scales: { x: { type: 'logarithmic', min: 0.5,
                                                title: { display: true, text: 'pages (log scale)' } },
                                           y: { ticks: { font: { family: 'monospace', size: 10 } } } } },
    });
  }

  // Invalidation timeline.
  const t = data.timeline;
  const binLabels = Array.from({ length: t.bins }, (_, i) => (i * t.bin_ms / 1000).toFixed(2));
  for (const [id, series, what] of [['timeline-event', t.by_event, 'event'],
                                    ['timeline-subscriber', t.by_subscriber, 'subscriber']]) {
    if (!series.length) {
      note(id, 'No invalidation reached a subscriber.');
      continue;
    }
    new Chart(canvasIn(id, 300), {
      type: 'bar',
      data: { labels: binLabels, datasets: series.map((s, i) => ({ label: s.name, backgroundColor: color(i),
                                                                   data: s.bins })) },
      options: { scales: { x: { stacked: true, title: { display: true, text: 'seconds (bins of ' +
                                                         t.bin_ms.toFixed(1) + ' ms)' } },
                           y: { stacked: true, title: { display: true, text: 'invalidations by ' + what } } } },
    });
  }

  // Latency histograms: buckets of doubling width, trimmed to the ones used.
  const hist = data.histograms;
  let lo = Infinity, hi = -1;
  for (const h of hist.series) h.counts.forEach((c, i) => { if (c) { lo = Math.min(lo, i); hi = Math.max(hi, i); } });
  if (hi < 0) {
    note('latency', 'No span was recorded.');
  } else {
    const unit = (ns) => ns >= 1e9 ? (ns / 1e9).toPrecision(3) + ' s' : ns >= 1e6 ? (ns / 1e6).toPrecision(3) + ' ms'
        : ns >= 1e3 ? (ns / 1e3).toPrecision(3) + ' µs' : ns + ' ns';
    const labels = [];
    for (let i = lo; i <= hi; i++) labels.push('≥ ' + unit(hist.lower_ns[i]));
    new Chart(canvasIn('latency', 320), {
      type: 'bar',
      data: { labels, datasets: hist.series.map((h, i) => ({ label: h.name, backgroundColor: color(i),
                                                                 data: h.counts.slice(lo, hi + 1) })) },
      options: { scales: { x: { title: { display: true, text: 'latency (buckets of doubling width)' } },
                           y: { type: 'logarithmic', title: { display: true, text: 'spans' } } } },
    });
  }
})();
)js";

constexpr const char* kErrorCatcher = R"js(
window.mmErrors = [];
function mmShowErrors() {
  const box = document.getElementById('errors');
  if (!box) return;
  while (box.childElementCount < window.mmErrors.length) {
    const p = document.createElement('pre');
    p.textContent = 'REPORT' + '-ERROR: ' + window.mmErrors[box.childElementCount];
    box.appendChild(p);
  }
  const status = document.getElementById('report-status');
  if (status && window.mmErrors.length) status.textContent = 'report-failed';
}
function mmError(message) {
  window.mmErrors.push(String(message));
  mmShowErrors();
}
window.addEventListener('error', (e) => mmError(e.message + ' (' + e.filename + ':' + e.lineno + ')'));
window.addEventListener('unhandledrejection', (e) => mmError('unhandled rejection: ' + e.reason));
const mmConsoleError = console.error.bind(console);
console.error = function (...args) { mmError(args.join(' ')); mmConsoleError(...args); };
)js";

constexpr const char* kStyle = R"css(
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1200px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; } h3 { font-size: 1em; }
table { border-collapse: collapse; } td { padding: 2px 12px 2px 0; }
td:first-child { color: #555; }
.plot { position: relative; width: 100%; }
.note { color: #666; font-style: italic; }
#errors pre { color: #b00; background: #fee; padding: 4px; }
code { background: #f3f3f3; padding: 1px 3px; }
)css";

}  // namespace

void Recorder::write_report(std::ostream& os, const ReportInfo& info) const {
  const Merged& m = impl_->merged;
  std::vector<std::pair<std::string, std::string>> summary = info.summary;
  summary.emplace_back("trace events", fmt::format("{} recorded, {} dropped", m.events, m.dropped));
  summary.emplace_back("recorded", fmt::format("{:.2f} s", m.duration_ns / 1e9));
  const std::string data = fmt::format(
      R"({{"summary":{},"memory":{},"address_spaces":{},"timeline":{},"histograms":{}}})",
      array(summary, [](const auto& kv) { return fmt::format("[{},{}]", q(kv.first), q(kv.second)); }),
      samples_json(m.samples), address_spaces_json(m.address_spaces), timeline_json(m), histograms_json(m.latencies, m.ns_per_tick));
  const std::string title = html_escape(info.title);
  os << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>" << title
     << "</title>\n<style>" << kStyle << "</style>\n<script>" << kErrorCatcher << "</script>\n"
     << "<script>/* Chart.js " << chart_js_version() << ", MIT License, embedded */\n" << chart_js_source()
     << "\n</script>\n<script type=\"application/json\" id=\"report-data\">" << data << "</script>\n</head>\n<body>\n"
     << "<div id=\"errors\"></div>\n<h1>" << title << "</h1>\n";
  if (!info.command.empty()) os << "<p>Run again: <code>" << html_escape(info.command) << "</code></p>\n";
  os << "<table id=\"summary\"></table>\n"
     << "<h2>Memory</h2>\n<div id=\"memory\"></div>\n"
     << "<h2>Address spaces at the end of the run, with what each secondary MMU mirrors</h2>\n<div id=\"map\"></div>\n"
     << "<h2>Invalidations over time, by event</h2>\n<div id=\"timeline-event\"></div>\n"
     << "<h2>Invalidations over time, by subscriber</h2>\n<div id=\"timeline-subscriber\"></div>\n"
     << "<h2>Latencies</h2>\n<div id=\"latency\"></div>\n"
     << "<p id=\"report-status\">report-pending</p>\n"
     << "<script>\ntry {" << kRenderScript << "} catch (e) { mmError(e && e.stack ? e.stack : e); }\n"
     << "mmShowErrors();\nif (!window.mmErrors.length) document.getElementById('report-status').textContent = "
        "'report-rendered';\n</script>\n</body></html>\n";
  os.flush();
}

}  // namespace mirrormm::trace
