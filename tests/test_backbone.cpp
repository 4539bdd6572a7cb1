#include "detr/nn/backbone.hpp"
#include "detr/nn/position_encoding.hpp"
#include "detr/ops/reduce.hpp"
#include "helpers.hpp"

using namespace detr;

namespace {
using Net = ResNet<18, 16, float, BackboneNorm::Frozen>;
// Image 0 fills 64 x 96, image 1 is 40 x 50 in the top-left corner.
Tensor<uint8_t> padded_mask() {
  auto mask = Tensor<uint8_t>::zeros({2, 64, 96});
  for (int64_t y = 0; y < 64; ++y)
    for (int64_t x = 0; x < 96; ++x) mask.data()[(64 + y) * 96 + x] = (y >= 40 || x >= 50) ? 1 : 0;
  return mask;
}
}  // namespace

TEST_CASE("Joiner: DETR's state_dict names, level channels and strides", "[nn][backbone]") {
  using DetrJoiner = Joiner<Net, PositionEmbeddingLearned<8>>;
  static_assert(Module<DetrJoiner>);
  static_assert(DetrJoiner::num_channels[0] == 32 && DetrJoiner::strides[0] == 32);
  using DeformableJoiner = Joiner<ResNet<50, 16>, PositionEmbeddingSine<8, float, SineNorm::Deformable>, 3>;
  static_assert(DeformableJoiner::num_channels == std::array<int, 3>{32, 64, 128});
  static_assert(DeformableJoiner::strides == std::array<int, 3>{8, 16, 32});
  DetrJoiner j;
  auto sd = state_dict(j);
  REQUIRE(sd.count("0.body.conv1.weight") == 1);
  REQUIRE(sd.count("0.body.layer2.0.downsample.1.running_var") == 1);
  REQUIRE(sd.count("1.row_embed.weight") == 1);
  REQUIRE(sd.count("1.col_embed.weight") == 1);
}

TEST_CASE("Joiner: features, masks and encodings per level, as Backbone + Joiner", "[nn][backbone]") {
  Joiner<Net, PositionEmbeddingSine<8>, 3> j;
  Rng rng(1);
  j.init(rng);
  const auto mask = padded_mask();
  const auto images = Var<float>(rng.normal_tensor<float>({2, 3, 64, 96}));
  auto levels = j.forward(images, mask);
  auto direct = j.backbone.body.forward(images);
  auto masks = feature_masks(mask, direct);
  const auto want = direct.levels();
  for (size_t l = 0; l < 3; ++l) {
    INFO("level " << l);
    REQUIRE(levels[l].features.value().to_vector() == want[l].value().to_vector());
    REQUIRE(levels[l].mask.to_vector() == masks[l].to_vector());
    REQUIRE(levels[l].pos.value().to_vector() ==
            PositionEmbeddingSine<8>{}.forward(masks[l]).value().to_vector());
    REQUIRE(levels[l].pos.shape() == Shape{2, 16, want[l].dim(2), want[l].dim(3)});
  }
  // DETR's single level is C5.
  Joiner<Net, PositionEmbeddingSine<8>> c5_only;
  c5_only.backbone.body = j.backbone.body;
  auto one = c5_only.forward(images, mask);
  REQUIRE(one[0].features.value().to_vector() == want[2].value().to_vector());

  REQUIRE_THROWS_WITH(j.forward(images, Tensor<uint8_t>::zeros({2, 64, 95})),
                      Catch::Contains("Joiner: mask [2, 64, 95] must be [B, H, W] of images [2, 3, 64, 96]"));
}

TEST_CASE("Joiner: the train_backbone rule reaches the ResNet, learned encodings train", "[nn][backbone]") {
  Joiner<ResNet<18, 16>, PositionEmbeddingLearned<8>> j;
  Rng rng(2);
  j.init(rng);
  apply_train_backbone(j, 1e-5);
  REQUIRE_FALSE(j.backbone.body.layer1.first.conv1.weight.requires_grad());
  REQUIRE(j.backbone.body.layer3.first.conv1.weight.requires_grad());
  REQUIRE(j.position_embedding.row_embed.weight.requires_grad());
  auto levels = j.forward(Var<float>(rng.normal_tensor<float>({2, 3, 64, 64})), Tensor<uint8_t>::zeros({2, 64, 64}));
  (sum(levels[0].features) + sum(levels[0].pos)).backward();
  REQUIRE(j.position_embedding.col_embed.weight.grad().defined());
  REQUIRE(j.backbone.body.layer4.first.conv2.weight.grad().defined());
  REQUIRE_FALSE(j.backbone.body.conv1.weight.grad().defined());
}
