#pragma once
// CocoDataset: a COCO-format detection dataset (an instances_*.json plus a folder of images).
//
// What matches the DETR reference (datasets/coco.py, ConvertCocoPolysToMask):
//   - crowd objects (iscrowd = 1) are dropped from training targets;
//   - boxes go from xywh to xyxy, are clamped to the image, and degenerate ones (x1 <= x0 or
//     y1 <= y0 after clamping) are dropped;
//   - images without annotations are valid samples with zero objects.
// What we add: COCO's category ids (1..90 with gaps) are mapped to contiguous labels 0..K-1 in
// ascending id order (the order pycocotools' getCatIds uses) and back, so a model has exactly K
// classes; every malformed input is a detr::Error that names the json file, the image or
// annotation id, and what was expected.
//
// Validation, case by case (pycocotools' behaviour in brackets):
//   - bbox width or height < 0: error [pycocotools takes it, and its area, as given; a
//     negative size is never a box]. Zero: accepted [as pycocotools]; such a box is dropped
//     from training targets (degenerate, as above) but stays in annotations() for evaluation,
//     where pycocotools counts it as ground truth too. 'area' < 0: error.
//   - annotation ids must be unique: an error names both positions [createIndex's id -> ann
//     dict silently keeps the last one]. An annotation without 'id' [a KeyError in
//     pycocotools] gets one after parsing: the ids after the largest id in the file, in file
//     order (so i + 1 when no annotation has one), which cannot collide with a real id.
//   - iscrowd: 0, 1 (integral floats too) or true / false [pycocotools takes any truthy value];
//     anything else is an error.
//   - file_name: non-empty, relative, and not climbing out of the image folder with '..'
//     (after lexical normalisation, so "a/../b.jpg" is fine) [pycocotools never opens images].
//
// get() reads the image's header first and compares its size with the json, and decoding is
// bounded by max_image_pixels() (data/image.hpp), so a mis-sized or bomb image is never decoded.
//
// The raw annotations (crowds included) stay available for evaluation (eval/coco_eval.hpp).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "detr/core/error.hpp"
#include "detr/data/image.hpp"
#include "detr/data/target.hpp"

namespace detr {

struct CocoCategory {
  int64_t id = 0;
  std::string name;
};

struct CocoImageInfo {
  int64_t id = 0;
  std::string file_name;
  int64_t width = 0, height = 0;
};

struct CocoAnnotation {
  int64_t id = 0, image_id = 0, category_id = 0;
  std::array<double, 4> bbox{};  // x, y, w, h in pixels
  double area = 0;               // 'area' from the file (w * h when absent)
  bool iscrowd = false;
};

namespace internal {
using json = nlohmann::json;

// Field access that fails with the file, the record and the key instead of nlohmann's
// context-free type_error.
struct JsonContext {
  const std::string& file;
  std::string where;  // e.g. "annotation #3 (id 17, image_id 4)"
};

inline const json& json_key(const JsonContext& c, const json& obj, const char* key) {
  DETR_CHECK(obj.is_object(), c.file << ": " << c.where << " is not a json object");
  auto it = obj.find(key);
  DETR_CHECK(it != obj.end(), c.file << ": " << c.where << " has no key '" << key << "'");
  return *it;
}
inline int64_t json_int(const JsonContext& c, const json& obj, const char* key) {
  const json& v = json_key(c, obj, key);
  if (v.is_number_integer()) return v.get<int64_t>();
  // Some exporters write ids as 3.0: accept integral floats, refuse anything else.
  DETR_CHECK(v.is_number_float() && std::isfinite(v.get<double>()) &&
                 v.get<double>() == std::floor(v.get<double>()),
             c.file << ": " << c.where << ": '" << key << "' must be an integer, got " << v.dump());
  return int64_t(v.get<double>());
}
inline double json_number(const JsonContext& c, const json& obj, const char* key) {
  const json& v = json_key(c, obj, key);
  DETR_CHECK(v.is_number(), c.file << ": " << c.where << ": '" << key
                                   << "' must be a number, got " << v.dump());
  double d = v.get<double>();
  DETR_CHECK(std::isfinite(d), c.file << ": " << c.where << ": '" << key << "' is not finite");
  return d;
}
inline std::string json_string(const JsonContext& c, const json& obj, const char* key) {
  const json& v = json_key(c, obj, key);
  DETR_CHECK(v.is_string(), c.file << ": " << c.where << ": '" << key
                                   << "' must be a string, got " << v.dump());
  return v.get<std::string>();
}
inline const json& json_array(const JsonContext& c, const json& obj, const char* key) {
  const json& v = json_key(c, obj, key);
  DETR_CHECK(v.is_array(), c.file << ": " << c.where << ": '" << key << "' must be an array");
  return v;
}

// 0 / 1 (integral floats too) or a json boolean.
inline bool json_iscrowd(const JsonContext& c, const json& obj) {
  const json& v = json_key(c, obj, "iscrowd");
  if (v.is_boolean()) return v.get<bool>();
  DETR_CHECK(v.is_number() && (v.get<double>() == 0 || v.get<double>() == 1),
             c.file << ": " << c.where << ": 'iscrowd' must be 0, 1, true or false, got "
                    << v.dump());
  return v.get<double>() == 1;
}

// Whether a file_name leaves the folder it is relative to: absolute, or '..' that climbs out
// after lexical normalisation ("a/../b" stays, "a/../../b" leaves).
inline bool path_escapes_folder(const std::string& file_name) {
  const std::filesystem::path p(file_name);
  if (p.has_root_path()) return true;
  const std::filesystem::path n = p.lexically_normal();
  return !n.empty() && *n.begin() == "..";
}

inline std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  DETR_CHECK(f.good(), "cannot open file " << path);
  std::string text(size_t(f.tellg()), '\0');
  f.seekg(0);
  f.read(text.data(), std::streamsize(text.size()));
  DETR_CHECK(f.good() || text.empty(), "cannot read file " << path);
  return text;
}

inline json parse_json_file(const std::string& path) {
  // Whole file first: nlohmann parses a string several times faster than an istream.
  std::string text = read_text_file(path);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(__FILE__, __LINE__, "malformed json in " + path + ": " + e.what());
  }
}
}  // namespace internal

class CocoDataset {
 public:
  CocoDataset() = default;

  // annotation_file: instances json; image_dir: folder the images' file_name is relative to.
  CocoDataset(std::string annotation_file, std::string image_dir)
      : file_(std::move(annotation_file)), image_dir_(std::move(image_dir)) {
    parse(internal::parse_json_file(file_));
  }
  // From an already parsed json document (tests, in-memory datasets); `name` is used in errors.
  static CocoDataset from_json(const nlohmann::json& doc, std::string name,
                               std::string image_dir = "") {
    CocoDataset d;
    d.file_ = std::move(name);
    d.image_dir_ = std::move(image_dir);
    d.parse(doc);
    return d;
  }

  int64_t size() const { return int64_t(images_.size()); }
  const std::string& annotation_file() const { return file_; }
  const std::vector<CocoImageInfo>& images() const { return images_; }
  const CocoImageInfo& image_info(int64_t index) const { return images_.at(check_index(index)); }
  // Raw annotations of one image, crowds included, in file order.
  const std::vector<CocoAnnotation>& annotations(int64_t index) const {
    return anns_.at(check_index(index));
  }
  int64_t index_of_image_id(int64_t image_id) const {
    auto it = image_index_.find(image_id);
    DETR_CHECK(it != image_index_.end(), file_ << ": no image with id " << image_id);
    return it->second;
  }

  // Categories sorted by id; label k is categories()[k].
  const std::vector<CocoCategory>& categories() const { return categories_; }
  int64_t num_classes() const { return int64_t(categories_.size()); }
  int64_t label_of(int64_t category_id) const {
    auto it = label_of_.find(category_id);
    DETR_CHECK(it != label_of_.end(), file_ << ": unknown category id " << category_id);
    return it->second;
  }
  int64_t category_id_of(int64_t label) const {
    DETR_CHECK(label >= 0 && label < num_classes(),
               file_ << ": label " << label << " out of range [0, " << num_classes() << ")");
    return categories_[label].id;
  }
  const std::string& class_name(int64_t label) const {
    category_id_of(label);  // range check
    return categories_[size_t(label)].name;
  }

  std::string image_path(int64_t index) const {
    const auto& f = image_info(index).file_name;
    return image_dir_.empty() ? f : image_dir_ + "/" + f;
  }

  // The training target of an image of the size given in the json (no decoding).
  Target target(int64_t index) const {
    const CocoImageInfo& info = image_info(index);
    return make_target(index, info.height, info.width);
  }

  // Decode the image and build its target. The size in the image's header must agree with
  // the json; it is compared before decoding, so a mis-sized image is never decoded.
  Sample get(int64_t index) const {
    const CocoImageInfo& info = image_info(index);
    const std::string path = image_path(index);
    std::vector<uint8_t> bytes;
    ImageHeader header;
    try {
      bytes = read_file_bytes(path);
      header = decode_image_header(bytes.data(), bytes.size(), path);
    } catch (const Error& e) {
      fail_image(info, path, e);
    }
    DETR_CHECK(header.height == info.height && header.width == info.width,
               file_ << ": image id " << info.id << " (" << path << ") is " << header.width
                     << " x " << header.height << " pixels, the json says " << info.width
                     << " x " << info.height);
    Image im;
    try {
      im = decode_image(bytes.data(), bytes.size(), path);
    } catch (const Error& e) {
      fail_image(info, path, e);
    }
    return Sample{std::move(im), make_target(index, info.height, info.width)};
  }

 private:
  int64_t check_index(int64_t index) const {
    DETR_CHECK(index >= 0 && index < size(),
               file_ << ": image index " << index << " out of range [0, " << size() << ")");
    return index;
  }

  [[noreturn]] void fail_image(const CocoImageInfo& info, const std::string& path,
                              const Error& e) const {
    throw Error(__FILE__, __LINE__,
                file_ + ": image id " + std::to_string(info.id) + " (" + path + "): " + e.what());
  }

  Target make_target(int64_t index, int64_t h, int64_t w) const {
    const auto& anns = anns_[index];
    std::vector<float> boxes, area;
    std::vector<int64_t> labels;
    for (const auto& a : anns) {
      if (a.iscrowd) continue;
      // xywh -> xyxy, clamped to the image (as the reference, in float32).
      float x0 = std::clamp(float(a.bbox[0]), 0.f, float(w));
      float y0 = std::clamp(float(a.bbox[1]), 0.f, float(h));
      float x1 = std::clamp(float(a.bbox[0]) + float(a.bbox[2]), 0.f, float(w));
      float y1 = std::clamp(float(a.bbox[1]) + float(a.bbox[3]), 0.f, float(h));
      if (!(x1 > x0 && y1 > y0)) continue;
      boxes.insert(boxes.end(), {x0, y0, x1, y1});
      labels.push_back(label_of_.at(a.category_id));
      area.push_back(float(a.area));
    }
    const int64_t n = int64_t(labels.size());
    Target t;
    t.image_id = images_[index].id;
    t.boxes = Tensor<float>::from({n, 4}, boxes);
    t.labels = Tensor<int64_t>::from({n}, labels);
    t.area = Tensor<float>::from({n}, area);
    t.iscrowd = Tensor<uint8_t>::zeros({n});
    t.orig_size = {h, w};
    t.size = {h, w};
    return t;
  }

  void parse(const nlohmann::json& doc) {
    using namespace internal;
    DETR_CHECK(doc.is_object(), file_ << ": top level must be a json object");
    JsonContext top{file_, "top level"};
    for (const auto& c : json_array(top, doc, "categories")) {
      JsonContext ctx{file_, "category #" + std::to_string(categories_.size())};
      CocoCategory cat{json_int(ctx, c, "id"), json_string(ctx, c, "name")};
      categories_.push_back(cat);
    }
    std::sort(categories_.begin(), categories_.end(),
              [](const CocoCategory& a, const CocoCategory& b) { return a.id < b.id; });
    for (size_t k = 0; k < categories_.size(); ++k) {
      DETR_CHECK(k == 0 || categories_[k].id != categories_[k - 1].id,
                 file_ << ": category id " << categories_[k].id << " appears twice");
      label_of_[categories_[k].id] = int64_t(k);
    }

    for (const auto& im : json_array(top, doc, "images")) {
      JsonContext ctx{file_, "image #" + std::to_string(images_.size())};
      CocoImageInfo info;
      info.id = json_int(ctx, im, "id");
      ctx.where = "image id " + std::to_string(info.id);
      info.file_name = json_string(ctx, im, "file_name");
      DETR_CHECK(!info.file_name.empty(), file_ << ": image id " << info.id
                                                << " has an empty 'file_name'");
      DETR_CHECK(!path_escapes_folder(info.file_name),
                 file_ << ": image id " << info.id << " has file_name '" << info.file_name
                       << "', which points outside the image folder (absolute or climbing "
                       << "out with '..'); file_name must be relative to the image folder");
      info.width = json_int(ctx, im, "width");
      info.height = json_int(ctx, im, "height");
      DETR_CHECK(info.width > 0 && info.height > 0,
                 file_ << ": image id " << info.id << " has size " << info.width << " x "
                       << info.height << ", expected positive width and height");
      DETR_CHECK(image_index_.emplace(info.id, int64_t(images_.size())).second,
                 file_ << ": image id " << info.id << " appears twice");
      images_.push_back(std::move(info));
    }
    anns_.resize(images_.size());

    // Test-set files have no annotations at all: that is an empty dataset of targets.
    if (!doc.contains("annotations")) return;
    const auto& anns = json_array(top, doc, "annotations");
    std::unordered_map<int64_t, size_t> position_of_id;  // ids in the file -> position
    std::vector<std::pair<int64_t, size_t>> without_id;  // (image index, slot in anns_)
    int64_t max_id = 0;
    for (size_t i = 0; i < anns.size(); ++i) {
      const auto& a = anns[i];
      JsonContext ctx{file_, "annotation #" + std::to_string(i)};
      CocoAnnotation ann;
      const bool has_id = a.is_object() && a.contains("id");
      if (has_id) {
        ann.id = json_int(ctx, a, "id");
        auto [it, fresh] = position_of_id.emplace(ann.id, i);
        DETR_CHECK(fresh, file_ << ": annotation #" << it->second << " and annotation #" << i
                                << " both have id " << ann.id
                                << "; annotation ids must be unique");
        max_id = std::max(max_id, ann.id);
      }
      ann.image_id = json_int(ctx, a, "image_id");
      const std::string image = "image id " + std::to_string(ann.image_id) + ")";
      ctx.where = has_id ? "annotation id " + std::to_string(ann.id) + " (" + image
                         : "annotation #" + std::to_string(i) + " (no id, " + image;
      ann.category_id = json_int(ctx, a, "category_id");
      const auto& bb = json_array(ctx, a, "bbox");
      DETR_CHECK(bb.size() == 4, file_ << ": " << ctx.where << ": 'bbox' must have 4 numbers "
                                       << "[x, y, w, h], got " << bb.dump());
      for (int k = 0; k < 4; ++k) {
        DETR_CHECK(bb[k].is_number() && std::isfinite(bb[k].get<double>()),
                   file_ << ": " << ctx.where << ": 'bbox' must hold finite numbers, got "
                         << bb.dump());
        ann.bbox[k] = bb[k].get<double>();
      }
      DETR_CHECK(ann.bbox[2] >= 0 && ann.bbox[3] >= 0,
                 file_ << ": " << ctx.where << ": 'bbox' [x, y, w, h] = " << bb.dump()
                       << " has a negative width or height");
      ann.area = a.contains("area") ? json_number(ctx, a, "area") : ann.bbox[2] * ann.bbox[3];
      DETR_CHECK(ann.area >= 0, file_ << ": " << ctx.where << ": 'area' " << ann.area
                                      << " is negative");
      ann.iscrowd = a.contains("iscrowd") && json_iscrowd(ctx, a);
      auto img = image_index_.find(ann.image_id);
      DETR_CHECK(img != image_index_.end(),
                 file_ << ": " << ctx.where << " refers to image id " << ann.image_id
                       << ", which is not in 'images'");
      DETR_CHECK(label_of_.count(ann.category_id),
                 file_ << ": " << ctx.where << " has category_id " << ann.category_id
                       << ", which is not in 'categories'");
      if (!has_id) without_id.emplace_back(img->second, anns_[img->second].size());
      anns_[img->second].push_back(ann);
    }
    for (const auto& [img, slot] : without_id) anns_[img][slot].id = ++max_id;
  }

  std::string file_, image_dir_;
  std::vector<CocoCategory> categories_;             // sorted by id
  std::unordered_map<int64_t, int64_t> label_of_;    // category id -> label
  std::vector<CocoImageInfo> images_;                // file order
  std::unordered_map<int64_t, int64_t> image_index_; // image id -> index
  std::vector<std::vector<CocoAnnotation>> anns_;    // [image index] raw annotations
};

}  // namespace detr
