// Running a `.mms` script against the model.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "mirrormm/config.h"
#include "mirrormm/device_mirror.h"
#include "mirrormm/dmirror.h"
#include "mirrormm/secondary_mmu.h"
#include "mirrormm/script.h"
#include "mirrormm/system.h"
#include "mirrormm/trace.h"

namespace mirrormm::replay {

struct Options {
  SystemConfig config;  // the modeled machine (frames, overcommit, RAM size, PKU, limits)
  // Tracing (mirrormm/trace.h, docs/tracing.md): when set, run() records the script's run
  // and writes the trace-event JSON / the HTML report there at its end.
  std::ostream* trace_json = nullptr;
  std::ostream* report_html = nullptr;
  // A bug of the catalog to re-inject (mirrormm/bugs.h): its kernel switch is on from the
  // first command, and `dev attach` of its driver's kind attaches the broken variant. An
  // unknown name injects nothing (the CLI checks names against bugs::catalog()).
  std::string inject = {};
};

// Runs commands one at a time against one modeled system (for tools and tests that want to
// look at the model between commands).
//
// Model-only (version 2) commands: the Replayer owns the devices of `dev attach` (a
// SecondaryMmu per NAME) and detaches them all when destroyed, before the System goes. The
// first model-only command turns its System's coherence checker on (System::set_mmu_checker)
// if it is not on yet; between two commands no invalidation is under way, so nothing is
// missed. `@N` chooses the process of `dev
// attach`; the other model-only commands act on a device or on the whole model and ignore it.
class Replayer {
 public:
  explicit Replayer(const Options& options);
  ~Replayer();
  Replayer(const Replayer&) = delete;
  Replayer& operator=(const Replayer&) = delete;
  // The result line of one command.
  std::string run(const script::Command& c);
  System& system() { return *sys_; }
  // The kind of device NAME (SecondaryMmu::kind(), "KIND[:VARIANT]"), or "" if none is attached.
  std::string device_kind(const std::string& name) const;
  // Adds every live process's address space, with the residency of the devices attached to
  // it, to rec's report.
  void trace_address_spaces(trace::Recorder& rec);

 private:
  std::string run_model_only(const script::Command& c);
  std::string run_hmm(const script::Command& c);
  std::string stats();
  std::string check();

  std::unique_ptr<System> sys_;
  std::string inject_;  // Options::inject
  std::map<std::string, std::unique_ptr<SecondaryMmu>> devices_;  // by NAME
  std::map<std::string, uint64_t> device_pids_;                   // the process of each device
  // Detached devices, kept until the Replayer goes: under the interleaving explorer another
  // scenario thread may still be inside a call on one (a fault that has dropped its locks
  // but not yet returned) when `dev detach` of it returns.
  std::vector<std::unique_ptr<SecondaryMmu>> detached_;
  // The dmirror test driver, loaded by the first `hmm` command, and its mirrors by M (a
  // closed one stays as null: its number is not given again).
  std::unique_ptr<DmirrorDriver> dmirror_;
  std::vector<std::unique_ptr<Dmirror>> hmm_mirrors_;
};

// The `maps` result line of the format: the entries of System::proc_maps that intersect the
// window, each as format_maps_entry() prints it, joined by "; ", or "none" when there are
// none.
std::string format_maps(const std::vector<MapsEntry>& maps);
// The `smaps` result line: the entries of System::smaps whose VMA intersects the window,
// each as format_smaps_entry() prints it, joined by "; ", or "none".
std::string format_smaps(const std::vector<SmapsEntry>& smaps);
// The `mlocked` result line: the entries of the VMAs that intersect the window, each as
// format_mlock_entry() prints it, joined by "; ", or "none".
std::string format_mlocked(const std::vector<SmapsEntry>& smaps);

// Runs every command of the script against a fresh modeled system and returns one result
// line per command, as `mirrormm replay` prints them. A script with a model-only command
// runs with the coherence checker on from its first command (options.config.mmu_checker is
// overridden).
std::vector<std::string> run(const script::Script& script, const Options& options);

// ---- transcripts for people ----

// How a transcript is laid out: the columns it may use, and whether results that mean
// trouble are coloured with ANSI escapes (signals and ERROR red, errno values yellow).
struct TranscriptStyle {
  int width = 100;
  bool color = false;
};

// Each command of the script beside its result, with its line number in the file (comments
// and blank lines have no command, so they do not appear):
//     12  @2 write 0x7f0000001000 4096 7        SEGV
// Commands are aligned in one column; a command too long for it stands on a line of its own
// with its result on the next; a result too long for the width wraps after "; " (or a space)
// with its continuation lines aligned under it. results holds one line per command
// (replay::run, host::run); missing ones print as "<missing>".
std::string format_transcript(const script::Script& script, const std::vector<std::string>& results,
                              const TranscriptStyle& style);

// Two transcripts of one script side by side, "line  command | model | host", from `before`
// commands before the command at index `diverging` (0-based) to `after` commands after it;
// the diverging command's line is marked "=>". Results too long for their column are cut
// with "...".
std::string format_side_by_side(const script::Script& script, const std::vector<std::string>& model,
                                const std::vector<std::string>& host, size_t diverging, size_t before, size_t after,
                                const TranscriptStyle& style);

}  // namespace mirrormm::replay
