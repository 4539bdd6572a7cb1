#include "detr/nn/position_encoding.hpp"
#include "parity.hpp"

using namespace detr;
using detr::test::reference;
using V = std::vector<Var<double>>;

TEST_CASE("PositionEmbeddingSine matches DETR / Deformable DETR on a padded batch", "[nn][position]") {
  static_assert(Module<PositionEmbeddingSine<128>>);
  static_assert(PositionEmbeddingSine<128>::channels == 256);
  const auto& ref = reference("position_encoding");
  const auto mask = ref.get<uint8_t>("mask");  // [3, 7, 10]
  auto detr = PositionEmbeddingSine<16>{}.forward(mask);
  REQUIRE(detr.shape() == Shape{3, 32, 7, 10});
  REQUIRE_FALSE(detr.requires_grad());
  // float sin / cos of arguments up to 2 pi: a few ulp of 1 apart from torch's vectorised ones.
  REQUIRE_ALLCLOSE(detr.value(), ref.get<float>("sine.out"), 1e-4, 1e-5);
  REQUIRE_ALLCLOSE((PositionEmbeddingSine<16, float, SineNorm::Deformable>{}.forward(mask).value()),
                   ref.get<float>("sine_deformable.out"), 1e-4, 1e-5);
  // Unnormalised counts reach 10, so arguments up to 10 (atol scaled accordingly).
  REQUIRE_ALLCLOSE((PositionEmbeddingSine<16, float, SineNorm::None>{}.forward(mask).value()),
                   ref.get<float>("sine_raw.out"), 1e-4, 1e-5);
}

TEST_CASE("PositionEmbeddingSine: an image's encoding does not depend on the padding around it",
          "[nn][position]") {
  // Image 1 is 4 x 9 inside a 7 x 10 batch; alone its encoding is that of a 4 x 9 mask.
  const auto& ref = reference("position_encoding");
  auto batched = PositionEmbeddingSine<8>{}.forward(ref.get<uint8_t>("mask")).value();  // [3, 16, 7, 10]
  auto alone = PositionEmbeddingSine<8>{}.forward(Tensor<uint8_t>::zeros({1, 4, 9})).value();
  for (int64_t c = 0; c < 16; ++c)
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 9; ++x) REQUIRE(batched.at({1, c, y, x}) == alone.at({0, c, y, x}));
}

TEST_CASE("PositionEmbeddingSine: errors", "[nn][position]") {
  PositionEmbeddingSine<8> pe;
  REQUIRE_THROWS_WITH(pe.forward(Tensor<uint8_t>::zeros({2, 3})),
                      Catch::Contains("PositionEmbeddingSine: mask must be [B, H, W], got [2, 3]"));
  REQUIRE_THROWS_WITH(pe.forward(Tensor<uint8_t>::zeros({2, 0, 3})),
                      Catch::Contains("PositionEmbeddingSine: mask [2, 0, 3] has an empty plane"));
}

TEST_CASE("PositionEmbeddingLearned matches DETR (values and embedding gradients)", "[nn][position]") {
  static_assert(Module<PositionEmbeddingLearned<128>>);
  const auto& ref = reference("position_encoding");
  PositionEmbeddingLearned<16> pe;
  load_state_dict(pe, ref, true, "learned.");
  auto pos = pe.forward(ref.get<uint8_t>("mask"));
  REQUIRE(pos.shape() == Shape{3, 32, 7, 10});
  REQUIRE_ALLCLOSE(pos.value(), ref.get<float>("learned.out"), 1e-6, 1e-7);
  pos.backward(ref.get<float>("learned.grad_out"));
  detr::test::require_parameter_grads(pe, ref, "learned");
}

TEST_CASE("PositionEmbeddingLearned: names, U(0, 1) init, gradcheck, size limit", "[nn][position][gradcheck]") {
  PositionEmbeddingLearned<4, double> pe;
  Rng rng(1);
  pe.init(rng);
  std::vector<std::string> names;
  for (auto& p : named_parameters(pe)) names.push_back(p.name);
  REQUIRE(names == std::vector<std::string>{"row_embed.weight", "col_embed.weight"});
  REQUIRE(pe.row_embed.weight.value().arr().minCoeff() >= 0.0);
  REQUIRE(pe.col_embed.weight.value().arr().maxCoeff() <= 1.0);
  REQUIRE(pe.col_embed.weight.value().arr().maxCoeff() > 0.9);
  const auto mask = Tensor<uint8_t>::zeros({2, 3, 5});
  REQUIRE_GRADCHECK([&](const V& v) {
    PositionEmbeddingLearned<4, double> p;
    p.row_embed.weight = v[0];
    p.col_embed.weight = v[1];
    return p.forward(mask);
  }, {pe.row_embed.weight.value(), pe.col_embed.weight.value()});
  REQUIRE_THROWS_WITH(pe.forward(Tensor<uint8_t>::zeros({1, 51, 4})),
                      Catch::Contains("PositionEmbeddingLearned: feature map 51 x 4 exceeds the 50 x 50"));
}
