#pragma once
// MetricsLog: one JSON object per line (JSON Lines), what the reference's main.py writes to
// log.txt after every epoch ({train_*, test_*, epoch, n_parameters}). Each record is flushed
// when written, so a crashed run keeps every finished epoch; a resumed run first drops the
// records of the epochs it is about to redo, so the file never holds an epoch twice.
//
//   MetricsLog log = MetricsLog::resume(out + "/metrics.jsonl", start_epoch);
//   log.write({{"epoch", e}, {"train_loss", l}, {"mAP", ap}});
//   auto records = read_metrics_log(out + "/metrics.jsonl");
#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "detr/core/error.hpp"

namespace detr {

// Every record of a JSON Lines file, in order; blank lines are skipped. Errors name the file
// and the line.
inline std::vector<nlohmann::json> read_metrics_log(const std::string& path) {
  std::ifstream f(path);
  DETR_CHECK(f.good(), "read_metrics_log: cannot open " << path);
  std::vector<nlohmann::json> records;
  std::string line;
  for (int64_t n = 1; std::getline(f, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json rec;
    try {
      rec = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      DETR_FAIL("read_metrics_log: " << path << " line " << n << " is not valid json: " << e.what());
    }
    DETR_CHECK(rec.is_object(), "read_metrics_log: " << path << " line " << n
                                                     << " must be a json object, got " << rec.dump());
    records.push_back(std::move(rec));
  }
  return records;
}

class MetricsLog {
 public:
  // A new log: an existing file is replaced.
  explicit MetricsLog(std::string path) : MetricsLog(std::move(path), std::ios::trunc) {}

  // Continue a log for a run resumed at `first_epoch`: records whose "epoch" is >= first_epoch
  // (written after the checkpoint the run resumes from) are dropped, the rest kept.
  static MetricsLog resume(const std::string& path, int64_t first_epoch) {
    std::vector<nlohmann::json> keep;
    if (std::ifstream(path).good())
      for (auto& r : read_metrics_log(path))
        if (!(r.contains("epoch") && r["epoch"].is_number_integer() && r["epoch"].get<int64_t>() >= first_epoch))
          keep.push_back(std::move(r));
    MetricsLog log(path);
    for (const auto& r : keep) log.write(r);
    return log;
  }

  const std::string& path() const { return path_; }

  // Appends `record` (a json object) as one line and flushes it.
  void write(const nlohmann::json& record) {
    DETR_CHECK(record.is_object(), "MetricsLog: " << path_ << ": a record must be a json object, got "
                                                  << record.dump());
    f_ << record.dump() << "\n" << std::flush;
    DETR_CHECK(f_.good(), "MetricsLog: cannot write to " << path_);
  }

 private:
  MetricsLog(std::string path, std::ios::openmode mode) : path_(std::move(path)), f_(path_, std::ios::out | mode) {
    DETR_CHECK(f_.good(), "MetricsLog: cannot open " << path_ << " for writing");
  }

  std::string path_;
  std::ofstream f_;
};

}  // namespace detr
