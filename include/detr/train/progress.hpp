#pragma once
// ProgressBar: one training epoch's progress, as the reference's MetricLogger prints it (loss,
// throughput, ETA), but shaped for a terminal or a log file:
//   - on a TTY, one line redrawn in place after every step;
//   - otherwise (a pipe, a CI log), a full line each time another `every_percent` of the epoch
//     is done, so a log holds a few lines per epoch instead of thousands of carriage returns.
//
//   ProgressBar bar("epoch 3", loader.num_batches(), std::cout);
//   for (...) { ...; bar.step(batch.size(), loss); }
//   bar.finish();
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <optional>
#include <ostream>
#include <string>

#include "detr/core/error.hpp"

namespace detr {

// Seconds as m:ss, or h:mm:ss from an hour on ("--:--" when unknown).
inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const int64_t s = int64_t(std::llround(seconds));
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(s / 3600), (long long)(s / 60 % 60),
                  (long long)(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", (long long)(s / 60), (long long)(s % 60));
  return buf;
}

// What a progress line shows; `elapsed` is wall time since the first step began.
struct ProgressStatus {
  std::string label;     // e.g. "epoch 3/50"
  int64_t done = 0;      // steps finished
  int64_t total = 0;     // steps in the epoch
  int64_t images = 0;    // images processed so far
  double elapsed = 0;    // seconds
  double loss = NAN;     // last step's loss
  double mean_loss = NAN;  // mean over the steps so far
};

// "epoch 3/50 [#######.............]  14/40  loss 2.3411 (avg 2.5123)  9.8 img/s  ETA 0:11"
inline std::string format_progress(const ProgressStatus& s, int bar_width = 20) {
  const double frac = s.total > 0 ? std::min(1.0, double(s.done) / double(s.total)) : 0.0;
  const int filled = int(std::floor(frac * bar_width));
  std::string line = s.label.empty() ? std::string() : s.label + " ";
  line += "[" + std::string(size_t(filled), '#') + std::string(size_t(bar_width - filled), '.') + "]";
  char buf[192];
  const int digits = int(std::to_string(s.total).size());
  const double rate = s.elapsed > 0 ? double(s.images) / s.elapsed : NAN;
  const double eta = s.done > 0 ? s.elapsed / double(s.done) * double(s.total - s.done) : NAN;
  std::snprintf(buf, sizeof buf, " %*lld/%lld  ", digits, (long long)s.done, (long long)s.total);
  line += buf;
  if (std::isfinite(s.loss)) {  // evaluation passes have no loss to show
    std::snprintf(buf, sizeof buf, "loss %.4f (avg %.4f)  ", s.loss, s.mean_loss);
    line += buf;
  }
  if (std::isfinite(rate))
    std::snprintf(buf, sizeof buf, "%.1f img/s", rate);
  else
    std::snprintf(buf, sizeof buf, "-- img/s");
  line += buf;
  line += (s.done >= s.total ? "  took " + format_duration(s.elapsed) : "  ETA " + format_duration(eta));
  return line;
}

class ProgressBar {
 public:
  // tty: redraw one line (true) or print every `every_percent` (false); unset: whether `os` is
  // std::cout or std::cerr attached to a terminal.
  ProgressBar(std::string label, int64_t total, std::ostream& os = std::cout,
              std::optional<bool> tty = std::nullopt, int every_percent = 10)
      : os_(os), every_percent_(every_percent) {
    DETR_CHECK(total >= 0, "ProgressBar: total must be >= 0, got " << total);
    DETR_CHECK(every_percent >= 1 && every_percent <= 100,
               "ProgressBar: every_percent must be in [1, 100], got " << every_percent);
    status_.label = std::move(label);
    status_.total = total;
    tty_ = tty ? *tty : is_terminal(os);
  }

  bool tty() const { return tty_; }
  const ProgressStatus& status() const { return status_; }

  // One step done: `images` in its batch, its loss. Time is measured from construction unless
  // `elapsed` is given (tests).
  void step(int64_t images, double loss, std::optional<double> elapsed = std::nullopt) {
    status_.done += 1;
    status_.images += images;
    status_.elapsed = elapsed ? *elapsed : seconds_since_start();
    status_.loss = loss;
    loss_sum_ += loss;
    status_.mean_loss = loss_sum_ / double(status_.done);
    if (tty_) {
      os_ << "\r" << format_progress(status_) << "\033[K" << std::flush;
      drawn_ = true;
    } else {
      // Print when the step crosses the next multiple of every_percent (and at the end).
      const int64_t pct = status_.total > 0 ? status_.done * 100 / status_.total : 100;
      if (pct / every_percent_ > printed_bucket_ || status_.done == status_.total) {
        printed_bucket_ = pct / every_percent_;
        os_ << format_progress(status_) << "\n" << std::flush;
        last_printed_ = status_.done;
      }
    }
  }

  // Ends the epoch's output: a newline after the redrawn line, or the last line when the epoch
  // stopped early (--max-steps) and it was not printed.
  void finish() {
    if (tty_) {
      if (drawn_) os_ << "\n" << std::flush;
      drawn_ = false;
    } else if (status_.done > 0 && last_printed_ != status_.done) {
      os_ << format_progress(status_) << "\n" << std::flush;
      last_printed_ = status_.done;
    }
  }

 private:
  static bool is_terminal(std::ostream& os) {
    if (&os == &std::cout) return ::isatty(STDOUT_FILENO) == 1;
    if (&os == &std::cerr) return ::isatty(STDERR_FILENO) == 1;
    return false;
  }
  double seconds_since_start() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

  std::ostream& os_;
  int every_percent_;
  bool tty_ = false, drawn_ = false;
  ProgressStatus status_;
  double loss_sum_ = 0;
  int64_t printed_bucket_ = 0, last_printed_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace detr
