#pragma once
// What the train, evaluate and detect examples share: the model configurations (one type alias
// each, sized for FashionDet on a 2-core CPU), the --model table that maps a name to a type,
// the image transforms, and the identity a checkpoint carries so the other two binaries rebuild
// the model it holds.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "detr/data/transforms.hpp"
#include "detr/eval/coco_eval.hpp"
#include "detr/io/checkpoint.hpp"
#include "detr/models/detr.hpp"
#include "detr/nn/position_encoding.hpp"
#if __has_include("detr/models/deformable_detr.hpp")
#include "detr/models/deformable_detr.hpp"
#define DETR_EXAMPLES_DEFORMABLE 1
#endif

namespace examples {
using namespace detr;

// FashionDet's 10 Fashion-MNIST classes. A dataset with another number of classes needs
// aliases of its own (the class head's size is part of the type).
inline constexpr int kNumClasses = 10;

// ---- Model configurations ------------------------------------------------------------------
// There are no pretrained weights, so the backbone trains from scratch: ResNet-18 at a quarter
// of its width (16..128 channels instead of 64..512, 1/16 of the compute) with trainable
// BatchNorm (DETR's FrozenBatchNorm only makes sense for an ImageNet-trained backbone). The
// transformer is narrower and shallower than the reference's (d 256, 6 + 6 layers, 100
// queries): d 128, 3 + 3 layers and 20 queries, since a FashionDet canvas holds at most 8
// objects. On 2 cores this trains at about 45 images/s (about 3 minutes per FashionDet epoch);
// ResNet<18, 2, ...> (half width) is about 4 times slower.
using DetrBackbone = Joiner<ResNet<18, 4, float, BackboneNorm::Trainable>, PositionEmbeddingSine<64>, 1>;
//                 backbone      classes      D   H   FFN  enc dec queries
using DetrModel = Detr<DetrBackbone, kNumClasses, 128, 8, 512, 3, 3, 20>;

#ifdef DETR_EXAMPLES_DEFORMABLE
// Deformable DETR reads C3..C5 (strides 8, 16, 32) plus one extra stride-64 level made by a
// 3x3 conv, which suits FashionDet's small objects far better than DETR's single C5 map. Same
// backbone and width as DetrModel; 300 -> 50 queries. Attending over all four levels costs:
// about 8 images/s on 2 cores (about 17 minutes per FashionDet epoch), each variant alike.
using DeformableBackbone =
    Joiner<ResNet<18, 4, float, BackboneNorm::Trainable>, PositionEmbeddingSine<64, float, SineNorm::Deformable>, 3>;
inline constexpr DeformableDetrConfig kDeformable{.hidden_dim = 128, .nheads = 8, .dim_feedforward = 512,
                                                  .enc_layers = 3, .dec_layers = 3, .num_queries = 50};
inline constexpr DeformableDetrConfig with_variant(DeformableDetrConfig c, bool refine, bool two_stage) {
  c.with_box_refine = refine;
  c.two_stage = two_stage;
  return c;
}
using DeformableModel = DeformableDetr<DeformableBackbone, kNumClasses, kDeformable>;
using DeformableRefineModel = DeformableDetr<DeformableBackbone, kNumClasses, with_variant(kDeformable, true, false)>;
using DeformableTwoStageModel = DeformableDetr<DeformableBackbone, kNumClasses, with_variant(kDeformable, true, true)>;
#endif

// ---- The --model table ---------------------------------------------------------------------
// Adding a model type is one line here: its name and its alias.
template <class F>
int with_model(const std::string& name, F&& f) {
  if (name == "detr") return f.template operator()<DetrModel>();
#ifdef DETR_EXAMPLES_DEFORMABLE
  if (name == "deformable") return f.template operator()<DeformableModel>();
  if (name == "deformable-refine") return f.template operator()<DeformableRefineModel>();
  if (name == "deformable-two-stage") return f.template operator()<DeformableTwoStageModel>();
#endif
  throw Error(__FILE__, __LINE__, "unknown model '" + name + "'");
}
inline const std::vector<std::string> kModelNames = {
    "detr",
#ifdef DETR_EXAMPLES_DEFORMABLE
    "deformable", "deformable-refine", "deformable-two-stage",
#endif
};

// ---- Transforms ----------------------------------------------------------------------------
// FashionDet canvases are 128..192 px a side, so instead of COCO's 800 px the shorter side is
// drawn around the native size: training uses image_size + {-32, -16, 0, 16, 32} with random
// horizontal flips (no random crop: a canvas is small enough that a crop cuts most objects),
// evaluation resizes the shorter side to image_size. The longer side is capped at twice that.
inline Transform train_augmentation(int64_t image_size) {
  std::vector<int64_t> scales;
  for (int64_t d = -32; d <= 32; d += 16) scales.push_back(std::max<int64_t>(32, image_size + d));
  return compose({random_horizontal_flip(), random_resize(scales, 2 * image_size)});
}
inline Transform eval_resize(int64_t image_size) { return random_resize({image_size}, 2 * image_size); }
// Augment (or resize), then ToTensor + Normalize: what a DataLoader applies to each sample.
inline auto to_model_input(Transform t) {
  return [t = std::move(t)](const Sample& s, Rng& rng) { return normalize(t(s, rng)); };
}

// ---- COCO numbers as JSON ------------------------------------------------------------------
// The 12 numbers by short name and the per-class AP, keys prefixed ("val_AP", ...): one record
// of train's metrics.jsonl, or evaluate --metrics.
inline nlohmann::json coco_metrics_json(const CocoEvalResult& coco, const std::string& prefix) {
  nlohmann::json rec = nlohmann::json::object();
  for (size_t i = 0; i < coco.stats.size(); ++i) rec[prefix + CocoEvalResult::kStatNames[i]] = coco.stats[i];
  nlohmann::json per_class = nlohmann::json::object();
  for (size_t k = 0; k < coco.category_names.size(); ++k) per_class[coco.category_names[k]] = coco.per_category_ap[k];
  rec[prefix + "AP_per_class"] = per_class;
  return rec;
}

// ---- What a checkpoint says about its model ------------------------------------------------
// train writes these as checkpoint metadata; evaluate and detect rebuild the model from them.
struct CheckpointInfo {
  std::string path;
  std::string model;                      // a name of the --model table
  std::vector<std::string> class_names;   // [num_classes], label order
  std::vector<int64_t> category_ids;      // [num_classes] COCO ids of the labels
  int64_t image_size = 160;               // eval_resize's shorter side
  int64_t epoch = 0;                      // epochs completed
  int64_t step = 0;                       // optimiser steps taken
};

inline io::Metadata checkpoint_metadata(const CheckpointInfo& c) {
  return {{"model", c.model},
          {"class_names", nlohmann::json(c.class_names).dump()},
          {"category_ids", nlohmann::json(c.category_ids).dump()},
          {"image_size", std::to_string(c.image_size)},
          {"epoch", std::to_string(c.epoch)},
          {"step", std::to_string(c.step)}};
}

// The identity of the model in a checkpoint written by train; errors name the file.
inline CheckpointInfo read_checkpoint_info(const std::string& path) {
  const auto file = io::SafetensorsFile::load(path);
  const auto& meta = file.metadata();
  auto get = [&](const std::string& key) -> const std::string& {
    auto it = meta.find("user." + key);
    DETR_CHECK(it != meta.end(), path << " has no '" << key
                                      << "' metadata: it was not written by the train example "
                                         "(expected a checkpoint from train --out DIR)");
    return it->second;
  };
  CheckpointInfo c;
  c.path = path;
  c.model = get("model");
  try {
    c.class_names = nlohmann::json::parse(get("class_names")).get<std::vector<std::string>>();
    c.category_ids = nlohmann::json::parse(get("category_ids")).get<std::vector<int64_t>>();
    c.image_size = std::stoll(get("image_size"));
    c.epoch = std::stoll(get("epoch"));
    c.step = std::stoll(get("step"));
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    DETR_FAIL(path << " has malformed train metadata: " << e.what());
  }
  // What the binaries would allocate from: refuse values no train run writes (--image-size is
  // 32..4096), rather than an allocation failure far from the cause.
  DETR_CHECK(c.image_size >= 32 && c.image_size <= 4096,
             path << " has image_size " << c.image_size << " in its train metadata, expected 32..4096");
  DETR_CHECK(c.epoch >= 0 && c.step >= 0,
             path << " has epoch " << c.epoch << " and step " << c.step << " in its train metadata, expected >= 0");
  DETR_CHECK(!c.class_names.empty(), path << " lists no classes in its train metadata");
  DETR_CHECK(c.class_names.size() == c.category_ids.size(),
             path << " lists " << c.class_names.size() << " class names but " << c.category_ids.size()
                  << " category ids");
  return c;
}

// The epoch checkpoints (epoch_NNNN.safetensors) in `dir` by epoch.
inline std::map<int64_t, std::filesystem::path> epoch_checkpoints(const std::string& dir) {
  std::map<int64_t, std::filesystem::path> out;
  if (!std::filesystem::is_directory(dir)) return out;
  const std::regex name(R"(epoch_(\d{4,})\.safetensors)");
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::smatch m;
    const std::string f = e.path().filename().string();
    if (std::regex_match(f, m, name)) out[std::stoll(m[1].str())] = e.path();
  }
  return out;
}

// The model named `requested` ("" = whatever the checkpoint holds) must be the one saved.
inline std::string checked_model_name(const CheckpointInfo& c, const std::string& requested) {
  DETR_CHECK(requested.empty() || requested == c.model,
             c.path << " holds a '" << c.model << "' model, --model asks for '" << requested << "'");
  bool known = false;
  for (const auto& n : kModelNames) known |= n == c.model;
  DETR_CHECK(known, c.path << " holds a '" << c.model << "' model, which this build does not have (it has: "
                           << nlohmann::json(kModelNames).dump() << ")");
  return c.model;
}

}  // namespace examples
