// Shards of a seed range and the JSON Lines records of a campaign (see campaign.h and
// docs/campaigns.md).
#include <fmt/format.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "mirrormm/campaign.h"
#include "mirrormm/mmu_notifier.h"

namespace mirrormm::campaign {
namespace {

using Json = nlohmann::json;

// A record that is valid JSON but not a record of this format; the message says which field.
struct BadRecord {
  std::string message;
};

const Json& field(const Json& j, const char* key, Json::value_t type, const char* what) {
  auto it = j.find(key);
  const bool ok = it != j.end() &&
                  (it->type() == type ||
                   (type == Json::value_t::number_unsigned && it->is_number_integer() && it->get<int64_t>() >= 0) ||
                   (type == Json::value_t::number_float && it->is_number()));
  if (!ok) throw BadRecord{fmt::format("the record has no \"{}\" ({})", key, what)};
  return *it;
}
uint64_t get_uint(const Json& j, const char* key) {
  return field(j, key, Json::value_t::number_unsigned, "an unsigned integer").get<uint64_t>();
}
std::string get_string(const Json& j, const char* key) {
  return field(j, key, Json::value_t::string, "a string").get<std::string>();
}
bool get_bool(const Json& j, const char* key) {
  return field(j, key, Json::value_t::boolean, "true or false").get<bool>();
}
const Json& get_object(const Json& j, const char* key) { return field(j, key, Json::value_t::object, "an object"); }

const char* kind_name(Kind k) { return k == Kind::kOracle ? "oracle" : "stress"; }
const char* finding_name(Kind k) { return k == Kind::kOracle ? "divergence" : "violation"; }

std::string verdict_name(Kind k, Verdict v) {
  switch (v) {
    case Verdict::kPass:
      return "pass";
    case Verdict::kFinding:
      return finding_name(k);
    case Verdict::kError:
      return "error";
  }
  return "error";
}

nlohmann::ordered_json options_json(const stress::Options& o) {
  nlohmann::ordered_json j = {{"threads", o.threads},
                              {"seconds", o.seconds},
                              {"memory", o.memory_mib},
                              {"swap", o.swap_mib},
                              {"nodes", o.nodes},
                              {"writeback", o.writeback},
                              {"devices", o.devices},
                              {"break_shootdown", o.break_shootdown},
                              {"stop_on_violation", o.stop_on_violation}};
  if (o.drop_bracket >= 0) j["drop_bracket"] = mmu_notify_event_name(static_cast<MmuNotifyEvent>(o.drop_bracket));
  return j;
}

stress::Options parse_options(const Json& j) {
  stress::Options o;
  o.threads = static_cast<int>(get_uint(j, "threads"));
  o.seconds = field(j, "seconds", Json::value_t::number_float, "a number").get<double>();
  o.memory_mib = get_uint(j, "memory");
  o.swap_mib = get_uint(j, "swap");
  o.nodes = static_cast<int>(get_uint(j, "nodes"));
  o.writeback = get_bool(j, "writeback");
  o.devices = get_bool(j, "devices");
  o.break_shootdown = get_bool(j, "break_shootdown");
  o.stop_on_violation = get_bool(j, "stop_on_violation");
  if (j.contains("drop_bracket")) {
    const std::string name = get_string(j, "drop_bracket");
    for (int e = 0; e <= static_cast<int>(MmuNotifyEvent::kExclusive); ++e)
      if (name == mmu_notify_event_name(static_cast<MmuNotifyEvent>(e))) o.drop_bracket = e;
    if (o.drop_bracket < 0) throw BadRecord{"\"drop_bracket\" names no MMU notifier event: " + name};
  }
  return o;
}

Record parse(const Json& j) {
  if (!j.is_object()) throw BadRecord{"a record is a JSON object"};
  Record r;
  const std::string kind = get_string(j, "kind");
  if (kind == "oracle") {
    r.kind = Kind::kOracle;
  } else if (kind == "stress") {
    r.kind = Kind::kStress;
  } else {
    throw BadRecord{"\"kind\" is \"" + kind + "\": a record is of kind \"oracle\" or \"stress\""};
  }
  const uint64_t version = get_uint(j, "version");
  if (version != kRecordVersion)
    throw BadRecord{fmt::format("record version {}; this mirrormm reads version {}", version, kRecordVersion)};
  r.campaign = get_string(j, "campaign");
  r.first_seed = get_uint(j, "first_seed");
  r.seeds = get_uint(j, "seeds");
  std::string error;
  std::optional<Shard> shard = parse_shard(get_string(j, "shard"), &error);
  if (!shard) throw BadRecord{"\"shard\": " + error};
  r.shard = *shard;
  r.seed = get_uint(j, "seed");
  if (r.seed < r.first_seed || r.seed - r.first_seed >= r.seeds)
    throw BadRecord{fmt::format("seed {} is outside the campaign's seeds {}..{}", r.seed, r.first_seed,
                                r.first_seed + r.seeds - 1)};
  if (!r.shard.contains(r.seed - r.first_seed))
    throw BadRecord{fmt::format("seed {} does not belong to shard {}", r.seed, r.shard.name())};
  const std::string verdict = get_string(j, "verdict");
  if (verdict == "pass") {
    r.verdict = Verdict::kPass;
  } else if (verdict == finding_name(r.kind)) {
    r.verdict = Verdict::kFinding;
  } else if (verdict == "error" && r.kind == Kind::kOracle) {
    r.verdict = Verdict::kError;
  } else {
    throw BadRecord{fmt::format("\"verdict\" of a {} record is pass, {}{}, not \"{}\"", kind, finding_name(r.kind),
                                r.kind == Kind::kOracle ? " or error" : "", verdict)};
  }
  r.stop = j.contains("stop") && get_bool(j, "stop");
  r.replay = get_string(j, "replay");
  if (r.kind == Kind::kOracle) {
    r.profile = get_string(j, "profile");
    r.commands = get_uint(j, "commands");
    if (r.verdict == Verdict::kFinding) {
      const Json& d = get_object(j, "divergence");
      r.divergence.line = get_uint(d, "line");
      r.divergence.command = get_string(d, "command");
      r.divergence.model = get_string(d, "model");
      r.divergence.host = get_string(d, "host");
    }
    if (r.verdict == Verdict::kError) r.error = get_string(j, "error");
    return r;
  }
  r.options = parse_options(get_object(j, "options"));
  r.options.seed = r.seed;
  const Json& counts = get_object(j, "counts");
  r.ops = get_uint(counts, "ops");
  r.violations = get_uint(counts, "violations");
  if ((r.violations > 0) != (r.verdict == Verdict::kFinding))
    throw BadRecord{fmt::format("a record with {} violations has verdict \"{}\"", r.violations, verdict)};
  if (r.verdict == Verdict::kFinding) {
    const Json& v = get_object(j, "violation");
    r.violation_message = get_string(v, "message");
    if (v.contains("kind")) r.violation_kind = get_string(v, "kind");
  }
  if (j.contains("kinds")) {
    for (const auto& [name, n] : get_object(j, "kinds").items()) {
      if (!n.is_number_unsigned()) throw BadRecord{"\"kinds\" counts are unsigned integers"};
      r.kinds.emplace_back(name, n.get<uint64_t>());
    }
  }
  return r;
}

}  // namespace

std::vector<uint64_t> Shard::seeds_of(uint64_t first, uint64_t seeds) const {
  std::vector<uint64_t> out;
  for (uint64_t k = 0; k < size(seeds); ++k) out.push_back(seed(first, k));
  return out;
}

std::string Shard::name() const { return fmt::format("{}/{}", index, count); }

std::optional<Shard> parse_shard(const std::string& text, std::string* error) {
  auto number = [](std::string_view s, uint64_t* out) {
    if (s.empty() || s.size() > 19) return false;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
    return ec == std::errc() && end == s.data() + s.size();
  };
  const size_t slash = text.find('/');
  Shard s;
  if (slash == std::string::npos || !number(std::string_view(text).substr(0, slash), &s.index) ||
      !number(std::string_view(text).substr(slash + 1), &s.count)) {
    *error = "\"" + text + "\" is not I/N (shard I of N, two decimal numbers, e.g. 0/4)";
    return std::nullopt;
  }
  if (s.count == 0) {
    *error = "\"" + text + "\": N, the number of shards, is at least 1";
    return std::nullopt;
  }
  if (s.index >= s.count) {
    *error = fmt::format("\"{}\": shards are numbered from 0, so I is at most N-1 = {}", text, s.count - 1);
    return std::nullopt;
  }
  return s;
}

std::string verdict_line(Kind kind, uint64_t total, uint64_t passed, uint64_t failed) {
  return fmt::format("{} {}: {} passed, {} failed", total, kind == Kind::kOracle ? "scripts" : "runs", passed, failed);
}

std::string to_json(const Record& r) {
  // Insertion order is kept (ordered_json) so that a record reads well: what it is first,
  // its verdict, then the details.
  nlohmann::ordered_json j;
  j["kind"] = kind_name(r.kind);
  j["version"] = kRecordVersion;
  j["campaign"] = r.campaign;
  j["first_seed"] = r.first_seed;
  j["seeds"] = r.seeds;
  j["shard"] = r.shard.name();
  j["seed"] = r.seed;
  if (r.kind == Kind::kOracle) {
    j["profile"] = r.profile;
    j["commands"] = r.commands;
  } else {
    j["options"] = options_json(r.options);
  }
  j["verdict"] = verdict_name(r.kind, r.verdict);
  if (r.kind == Kind::kOracle && r.verdict == Verdict::kFinding)
    j["divergence"] = {{"line", r.divergence.line},
                       {"command", r.divergence.command},
                       {"model", r.divergence.model},
                       {"host", r.divergence.host}};
  if (r.verdict == Verdict::kError) j["error"] = r.error;
  if (r.kind == Kind::kStress) {
    j["counts"] = {{"ops", r.ops}, {"violations", r.violations}};
    if (r.verdict == Verdict::kFinding) {
      nlohmann::ordered_json v;
      if (!r.violation_kind.empty()) v["kind"] = r.violation_kind;
      v["message"] = r.violation_message;
      j["violation"] = v;
    }
    if (!r.kinds.empty()) {
      nlohmann::ordered_json k = nlohmann::ordered_json::object();
      for (const auto& [name, n] : r.kinds) k[name] = n;
      j["kinds"] = k;
    }
  }
  if (r.stop) j["stop"] = true;
  j["replay"] = r.replay;
  // Messages come from the model and the host; never let a stray byte make the line invalid.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::optional<Record> parse_record(const std::string& line, std::string* error) {
  Json j;
  try {
    j = Json::parse(line);
  } catch (const Json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.N] parse error at line 1, column C: ...".
    std::string what = e.what();
    const size_t at = what.find("] ");
    *error = "not JSON: " + (at == std::string::npos ? what : what.substr(at + 2));
    return std::nullopt;
  }
  try {
    return parse(j);
  } catch (const BadRecord& e) {
    *error = e.message;
  } catch (const Json::exception& e) {
    *error = std::string("not a record: ") + e.what();
  }
  return std::nullopt;
}

Record stress_record(const stress::Options& o, const stress::Report& report) {
  Record r;
  r.kind = Kind::kStress;
  r.seed = o.seed;
  r.options = o;
  r.replay = stress::replay_command(o);
  r.ops = report.ops;
  r.violations = report.violations;
  r.verdict = report.violations ? Verdict::kFinding : Verdict::kPass;
  if (!report.messages.empty()) r.violation_message = report.messages.front();
  // System counts violations by kind but keeps no kind with its messages: the first
  // message's kind is known only when the run saw a single kind.
  if (report.kinds.size() == 1) r.violation_kind = report.kinds.front().first;
  r.kinds = report.kinds;
  return r;
}

}  // namespace mirrormm::campaign
