#pragma once
// A dataset folder in COCO layout, and its splits loaded as CocoDatasets. Two naming schemes
// are recognised, so the same flag takes FashionDet and COCO 2017 as downloaded:
//
//   DIR/annotations/instances_train.json      DIR/train/       (FashionDet, make_fashion_det)
//   DIR/annotations/instances_train2017.json  DIR/train2017/   (COCO 2017)
//
// and likewise for "val". load_coco_split can keep only the first N images of a split (in file
// order, with their annotations), for quick runs on a subset: evaluation then scores exactly
// the images that were run.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <unordered_set>

#include "detr/core/error.hpp"
#include "detr/data/coco.hpp"

namespace detr {

struct CocoSplitFiles {
  std::string annotations;  // the instances json
  std::string images;       // the folder its file_names are relative to
};

// The files of `split` ("train", "val") under `dir`; an error lists what was looked for.
inline CocoSplitFiles find_coco_split(const std::string& dir, const std::string& split) {
  namespace fs = std::filesystem;
  DETR_CHECK(fs::is_directory(dir), "dataset folder " << dir << " does not exist");
  std::string tried;
  for (const std::string suffix : {"", "2017"}) {
    const fs::path ann = fs::path(dir) / "annotations" / ("instances_" + split + suffix + ".json");
    const fs::path img = fs::path(dir) / (split + suffix);
    if (fs::is_regular_file(ann) && fs::is_directory(img)) return {ann.string(), img.string()};
    tried += "\n  " + ann.string() + " with images in " + img.string() + "/";
  }
  throw Error(__FILE__, __LINE__, "dataset folder " + dir + " has no COCO '" + split + "' split; looked for" + tried);
}

// The split as a CocoDataset; max_images >= 0 keeps the first max_images images.
inline CocoDataset load_coco_split(const std::string& dir, const std::string& split, int64_t max_images = -1) {
  const CocoSplitFiles files = find_coco_split(dir, split);
  if (max_images < 0) return CocoDataset(files.annotations, files.images);
  nlohmann::json doc = internal::parse_json_file(files.annotations);
  DETR_CHECK(doc.is_object() && doc.contains("images") && doc["images"].is_array(),
             files.annotations << ": top level must be an object with an 'images' array");
  auto& images = doc["images"];
  if (int64_t(images.size()) > max_images) {
    images.erase(images.begin() + max_images, images.end());
    // Ids as CocoDataset reads them (integral floats included); malformed records are kept
    // so that CocoDataset reports them.
    auto id_of = [](const nlohmann::json& obj, const char* key) -> std::optional<int64_t> {
      if (!obj.is_object() || !obj.contains(key) || !obj[key].is_number()) return std::nullopt;
      return int64_t(obj[key].get<double>());
    };
    std::unordered_set<int64_t> kept;
    for (const auto& im : images)
      if (auto id = id_of(im, "id")) kept.insert(*id);
    if (doc.contains("annotations") && doc["annotations"].is_array()) {
      nlohmann::json anns = nlohmann::json::array();
      for (auto& a : doc["annotations"]) {
        auto id = id_of(a, "image_id");
        if (!id || kept.count(*id)) anns.push_back(std::move(a));
      }
      doc["annotations"] = std::move(anns);
    }
  }
  return CocoDataset::from_json(doc, files.annotations, files.images);
}

}  // namespace detr
