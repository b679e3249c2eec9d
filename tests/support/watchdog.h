// Bounded waits for tests: a test that hangs fails within its limit, naming what hung,
// instead of running into ctest's 900 s timeout.
//
// - BoundedThread: a thread whose join is bounded.
// - Watchdog: a scoped guard; its scope must end within the limit of its construction or of
//   its last kick().
// - install_test_watchdog(limit): runs every test of a binary under a Watchdog of `limit`
//   (a GoogleTest listener). A binary installs it once, at namespace scope:
//       const bool kWatchdog = testing::install_test_watchdog(testing::scaled(120s));
//   A test whose length grows with a parameter (a campaign of N scripts) calls
//   kick_test_watchdog() at each step, so that the limit bounds one step, not the sum.
//
// Past its limit each aborts the binary with
//     FATAL: WHAT did not finish within N ms (hang)
// on stderr. Limits written for an optimized build are scaled() for the build at hand
// (sanitizers slow the model down several times) and by MIRRORMM_WATCHDOG_SCALE, a factor
// from the environment for slow machines or a debugger session (0 switches the per-test
// watchdog off).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace mirrormm::testing {

#if defined(__has_feature)
#define MIRRORMM_TEST_HAS_FEATURE(x) __has_feature(x)
#else
#define MIRRORMM_TEST_HAS_FEATURE(x) 0
#endif

// How many times slower than a build without sanitizers this build runs the model (GCC
// defines __SANITIZE_*__, clang answers __has_feature).
#if defined(__SANITIZE_THREAD__) || MIRRORMM_TEST_HAS_FEATURE(thread_sanitizer)
inline constexpr int kSanitizerSlowdown = 5;
#elif defined(__SANITIZE_ADDRESS__) || MIRRORMM_TEST_HAS_FEATURE(address_sanitizer)
inline constexpr int kSanitizerSlowdown = 3;
#else
inline constexpr int kSanitizerSlowdown = 1;
#endif
#undef MIRRORMM_TEST_HAS_FEATURE

// MIRRORMM_WATCHDOG_SCALE from the environment (a non-negative factor), 1 when unset or
// unreadable.
inline double watchdog_env_scale() {
  const char* v = std::getenv("MIRRORMM_WATCHDOG_SCALE");
  if (v == nullptr || *v == '\0') return 1;
  char* end = nullptr;
  const double f = std::strtod(v, &end);
  return (end != v && f >= 0) ? f : 1;
}

// A limit meant for an optimized build, for this one: times kSanitizerSlowdown and the
// environment's factor, at least 1 ms. Zero when the environment switched watchdogs off.
inline std::chrono::milliseconds scaled(std::chrono::milliseconds base) {
  const double ms = static_cast<double>(base.count()) * kSanitizerSlowdown * watchdog_env_scale();
  if (ms <= 0) return std::chrono::milliseconds(0);
  using Rep = std::chrono::milliseconds::rep;
  return std::chrono::milliseconds(std::max<Rep>(1, static_cast<Rep>(ms)));
}

// The end of a hang: the message, then abort (so that a core dump or a debugger shows the
// stuck threads).
[[noreturn]] inline void hang_detected(const std::string& what, std::chrono::milliseconds limit) {
  std::fprintf(stderr, "FATAL: %s did not finish within %lld ms (hang)\n", what.c_str(),
               static_cast<long long>(limit.count()));
  std::fflush(stderr);
  std::abort();
}

// A thread whose join is bounded: past the limit the binary aborts (a hang is a failure).
class BoundedThread {
 public:
  template <class F>
  explicit BoundedThread(F f) : t_([this, f]() mutable {
      f();
      std::lock_guard<std::mutex> g(mu_);
      done_ = true;
      cv_.notify_all();
    }) {}
  ~BoundedThread() {
    if (t_.joinable()) join("thread");
  }
  BoundedThread(const BoundedThread&) = delete;
  BoundedThread& operator=(const BoundedThread&) = delete;
  bool done() {
    std::lock_guard<std::mutex> g(mu_);
    return done_;
  }
  bool wait_for(std::chrono::milliseconds ms) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, ms, [&] { return done_; });
  }
  void join(const char* what, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    if (!wait_for(limit)) hang_detected(what, limit);
    t_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;  // guarded by mu_
  std::thread t_;      // last: its body uses the members above
};

// A scoped guard against a hang: unless it is destroyed within `limit` of its construction
// or of its last kick(), a thread of its own calls hang_detected(what, limit). A zero limit
// guards nothing.
class Watchdog {
 public:
  Watchdog(std::string what, std::chrono::milliseconds limit) : what_(std::move(what)), limit_(limit) {
    if (limit_.count() == 0) return;
    deadline_ = std::chrono::steady_clock::now() + limit_;
    t_ = std::thread([this] {
      std::unique_lock<std::mutex> l(mu_);
      while (!done_) {
        if (cv_.wait_until(l, deadline_) == std::cv_status::timeout && !done_ &&
            std::chrono::steady_clock::now() >= deadline_)
          hang_detected(what_, limit_);
      }
    });
  }
  ~Watchdog() {
    if (!t_.joinable()) return;
    {
      std::lock_guard<std::mutex> g(mu_);
      done_ = true;
    }
    cv_.notify_all();
    t_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Progress: the limit starts again from now.
  void kick() {
    std::lock_guard<std::mutex> g(mu_);
    deadline_ = std::chrono::steady_clock::now() + limit_;
  }

 private:
  const std::string what_;
  const std::chrono::milliseconds limit_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::chrono::steady_clock::time_point deadline_;  // guarded by mu_
  bool done_ = false;                               // guarded by mu_
  std::thread t_;  // last: its body uses the members above
};

// The GoogleTest listener of install_test_watchdog(): a Watchdog named "Suite.Test" from each
// test's start to its end.
class TestWatchdog : public ::testing::EmptyTestEventListener {
 public:
  explicit TestWatchdog(std::chrono::milliseconds limit) : limit_(limit) {}
  void OnTestStart(const ::testing::TestInfo& info) override {
    auto w = std::make_unique<Watchdog>(std::string(info.test_suite_name()) + "." + info.name(), limit_);
    std::lock_guard<std::mutex> g(mu_);
    current_ = std::move(w);
  }
  void OnTestEnd(const ::testing::TestInfo&) override {
    std::unique_ptr<Watchdog> w;
    std::lock_guard<std::mutex> g(mu_);
    w = std::move(current_);
  }
  void kick() {
    std::lock_guard<std::mutex> g(mu_);
    if (current_) current_->kick();
  }

  // The binary's instance (set by install_test_watchdog), or nullptr.
  static TestWatchdog*& instance() {
    static TestWatchdog* the_instance = nullptr;
    return the_instance;
  }

 private:
  const std::chrono::milliseconds limit_;
  std::mutex mu_;
  std::unique_ptr<Watchdog> current_;  // guarded by mu_; the running test's
};

// Runs every test of this binary under a Watchdog of `limit` (scale it with scaled()), unless
// MIRRORMM_WATCHDOG_SCALE is 0. Returns true, for use in a namespace-scope initializer; a
// second call changes nothing.
inline bool install_test_watchdog(std::chrono::milliseconds limit) {
  if (TestWatchdog::instance() != nullptr || watchdog_env_scale() == 0) return true;
  TestWatchdog::instance() = new TestWatchdog(limit);  // owned by GoogleTest's listener list
  ::testing::UnitTest::GetInstance()->listeners().Append(TestWatchdog::instance());
  return true;
}

// Progress in the running test: its watchdog's limit starts again. Nothing without one.
inline void kick_test_watchdog() {
  if (TestWatchdog* w = TestWatchdog::instance()) w->kick();
}

}  // namespace mirrormm::testing
