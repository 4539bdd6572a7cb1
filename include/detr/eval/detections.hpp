#pragma once
// Detection and load_detections: COCO results files ([{image_id, category_id, bbox, score}]),
// what a detector writes and the COCO evaluator reads.
#include <nlohmann/json.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "detr/core/error.hpp"
#include "detr/data/coco.hpp"

namespace detr {

// One detection in COCO results format.
struct Detection {
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  // x, y, w, h in pixels of the original image
  double score = 0;
};

namespace internal {
// SAX reader for results files: a results file holds ~100 detections per image, and building
// nlohmann's DOM (a std::map per detection) costs more than the whole evaluation.
class DetectionsSax {
 public:
  using json = nlohmann::json;
  DetectionsSax(const std::string& path, std::vector<Detection>& out) : path_(path), out_(out) {}

  bool null() { return value("null"); }
  bool boolean(bool) { return value("a boolean"); }
  bool number_integer(int64_t v) { return number(double(v), v, true); }
  bool number_unsigned(uint64_t v) { return number(double(v), int64_t(v), true); }
  bool number_float(double v, const std::string&) { return number(v, 0, false); }
  bool string(std::string&) { return value("a string"); }
  bool binary(json::binary_t&) { return value("binary"); }
  bool start_object(size_t) {
    if (skip_depth_ > 0 || (depth_ == 2 && key_ != Key::kBbox)) return enter_skipped();
    DETR_CHECK(depth_ != 0, path_ << ": a results file must be a json array of detections");
    DETR_CHECK(depth_ == 1, where() << ": expected a detection object");
    ++depth_;
    cur_ = Detection{};
    seen_ = 0;
    return true;
  }
  bool end_object() {
    if (skip_depth_ > 0) return leave_skipped();
    --depth_;
    static const char* kNames[4] = {"image_id", "category_id", "bbox", "score"};
    for (int k = 0; k < 4; ++k)
      DETR_CHECK(seen_ & (1 << k), where() << " has no key '" << kNames[k] << "'");
    out_.push_back(cur_);
    return true;
  }
  bool start_array(size_t) {
    if (skip_depth_ > 0) return enter_skipped();
    if (depth_ == 0) {
      ++depth_;
      return true;
    }
    DETR_CHECK(depth_ == 2, where() << ": expected a detection object, got an array");
    if (key_ != Key::kBbox) return enter_skipped();
    ++depth_;
    bbox_n_ = 0;
    return true;
  }
  bool end_array() {
    if (skip_depth_ > 0) return leave_skipped();
    if (depth_ == 1) {
      --depth_;
      return true;
    }
    --depth_;  // end of bbox
    DETR_CHECK(bbox_n_ == 4, where() << ": 'bbox' must have 4 numbers [x, y, w, h], got "
                                     << bbox_n_);
    seen_ |= 1 << 2;
    return true;
  }
  bool key(std::string& k) {
    if (skip_depth_ > 0) return true;
    key_ = k == "image_id" ? Key::kImage : k == "category_id" ? Key::kCategory
         : k == "bbox" ? Key::kBbox : k == "score" ? Key::kScore : Key::kOther;
    return true;
  }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& e) {
    throw Error(__FILE__, __LINE__, "malformed json in " + path_ + ": " + e.what());
  }

 private:
  enum class Key { kImage, kCategory, kBbox, kScore, kOther };
  std::string where() const {
    return path_ + ": detection #" + std::to_string(out_.size());
  }
  bool enter_skipped() {
    DETR_CHECK(depth_ >= 2 || skip_depth_ > 0,
               path_ << ": a results file must be a json array of detections");
    ++skip_depth_;
    return true;
  }
  bool leave_skipped() {
    --skip_depth_;
    return true;
  }
  bool value(const char* what) {
    if (skip_depth_ > 0 || (depth_ == 2 && key_ == Key::kOther)) return true;
    DETR_CHECK(depth_ >= 2, path_ << ": a results file must be a json array of detections");
    throw Error(__FILE__, __LINE__, where() + ": expected a number, got " + what);
  }
  bool number(double v, int64_t i, bool is_int) {
    if (skip_depth_ > 0 || (depth_ == 2 && key_ == Key::kOther)) return true;
    DETR_CHECK(depth_ >= 2, path_ << ": a results file must be a json array of detections");
    DETR_CHECK(std::isfinite(v), where() << ": a number is not finite");
    if (depth_ == 3) {  // inside bbox
      DETR_CHECK(bbox_n_ < 4, where() << ": 'bbox' must have 4 numbers [x, y, w, h]");
      cur_.bbox[bbox_n_++] = v;
      return true;
    }
    auto integral = [&](const char* name) {
      DETR_CHECK(is_int || v == std::floor(v), where() << ": '" << name
                                                       << "' must be an integer, got " << v);
      return is_int ? i : int64_t(v);
    };
    switch (key_) {
      case Key::kImage: cur_.image_id = integral("image_id"), seen_ |= 1; break;
      case Key::kCategory: cur_.category_id = integral("category_id"), seen_ |= 2; break;
      case Key::kScore: cur_.score = v, seen_ |= 8; break;
      case Key::kBbox: throw Error(__FILE__, __LINE__, where() + ": 'bbox' must be an array of 4 numbers");
      case Key::kOther: break;
    }
    return true;
  }

  const std::string& path_;
  std::vector<Detection>& out_;
  Detection cur_;
  int depth_ = 0, skip_depth_ = 0, bbox_n_ = 0, seen_ = 0;
  Key key_ = Key::kOther;
};
}  // namespace internal

// Read a COCO results file: a json array of {image_id, category_id, bbox, score} (other keys,
// such as a segmentation, are skipped).
inline std::vector<Detection> load_detections(const std::string& path) {
  std::string text = internal::read_text_file(path);
  std::vector<Detection> dets;
  dets.reserve(text.size() / 80);
  internal::DetectionsSax sax(path, dets);
  nlohmann::json::sax_parse(text, &sax);
  return dets;
}

// Write detections as a COCO results file (what load_detections and pycocotools' loadRes read).
// Numbers are written with 17 significant digits, so a round trip is exact.
inline void save_detections(const std::string& path, const std::vector<Detection>& dets) {
  nlohmann::json doc = nlohmann::json::array();
  for (const auto& d : dets)
    doc.push_back({{"image_id", d.image_id},
                   {"category_id", d.category_id},
                   {"bbox", {d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3]}},
                   {"score", d.score}});
  std::ofstream f(path);
  DETR_CHECK(f.good(), "save_detections: cannot open " << path << " for writing");
  f << doc.dump();
  DETR_CHECK(f.good(), "save_detections: cannot write " << path);
}

}  // namespace detr
