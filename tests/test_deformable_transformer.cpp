// Deformable DETR's transformer pieces beyond the whole-model parity of test_deformable_detr:
// padding invariance (an image's encoder memory and decoder outputs do not change when it is
// batched with a bigger image), the encoder's reference points and the two-stage proposals on
// hand-checked cases (valid ratios, the 0.01 / 0.99 bounds, the inf fill), and input errors.
#include <cmath>
#include <limits>

#include "detr/nn/mlp.hpp"
#include "detr/transformer/deformable_transformer.hpp"
#include "helpers.hpp"

using namespace detr;

namespace {
constexpr DeformableTransformerConfig kSmall{.d_model = 16,
                                             .nhead = 2,
                                             .num_encoder_layers = 2,
                                             .num_decoder_layers = 2,
                                             .dim_feedforward = 32,
                                             .num_feature_levels = 2,
                                             .dec_n_points = 2,
                                             .enc_n_points = 2,
                                             .two_stage = false,
                                             .two_stage_num_proposals = 5};
using Small = DeformableTransformer<kSmall, double>;

// Query-dependent offsets and attention weights (the reference init zeroes their weights).
template <class M>
void randomise_sampling(M& m, uint64_t seed) {
  for (auto& p : named_parameters(m))
    if (p.name.find("sampling_offsets.weight") != std::string::npos ||
        p.name.find("attention_weights.weight") != std::string::npos)
      p.var->mutable_value().copy_(detr::test::randn(p.var->shape(), seed++, 0.2));
}
}  // namespace

// Image A alone (levels 3x4 and 2x2) and batched behind a bigger image B (levels 4x6 and 2x3)
// with A padded: the valid ratios rescale every reference point so that A's sampling locations
// land on the same pixels, and padded values are zeroed, so A's results must not change.
TEST_CASE("DeformableTransformer is invariant to padding from a larger batch-mate", "[deformable_transformer]") {
  const bool refine = GENERATE(false, true);
  INFO("with_box_refine " << refine);
  Small m;
  Rng rng(7);
  m.init(rng);
  randomise_sampling(m, 100);
  eval(m);
  Repeat<2, MLP<16, 16, 4, 3, double>> bbox_embed;
  bbox_embed.init(rng);
  DeformableHeads<double> heads;
  if (refine) heads.bbox_embed = [&](int i, const Var<double>& x) { return bbox_embed[i].forward(x); };

  const int64_t D = 16, Q = 5;
  const int64_t ah[2] = {3, 2}, aw[2] = {4, 2}, bh[2] = {4, 2}, bw[2] = {6, 3};
  Var<double> query(detr::test::randn({Q, 2 * D}, 1));
  std::vector<Var<double>> a_src, a_pos, ab_src, ab_pos;
  std::vector<Tensor<uint8_t>> a_mask, ab_mask;
  for (int l = 0; l < 2; ++l) {
    auto as = detr::test::randn({1, D, ah[l], aw[l]}, 10 + l), ap = detr::test::randn({1, D, ah[l], aw[l]}, 20 + l);
    auto src = detr::test::randn({2, D, bh[l], bw[l]}, 30 + l), pos = detr::test::randn({2, D, bh[l], bw[l]}, 40 + l);
    auto mask = Tensor<uint8_t>::zeros({2, bh[l], bw[l]});
    for (int64_t c = 0; c < D; ++c)
      for (int64_t y = 0; y < bh[l]; ++y)
        for (int64_t x = 0; x < bw[l]; ++x) {
          const bool pad = y >= ah[l] || x >= aw[l];
          src.at({1, c, y, x}) = pad ? 1e3 : as.at({0, c, y, x});
          pos.at({1, c, y, x}) = pad ? -7.0 : ap.at({0, c, y, x});
          mask.at({1, y, x}) = pad;
        }
    a_src.emplace_back(as);
    a_pos.emplace_back(ap);
    a_mask.push_back(Tensor<uint8_t>::zeros({1, ah[l], aw[l]}));
    ab_src.emplace_back(src);
    ab_pos.emplace_back(pos);
    ab_mask.push_back(mask);
  }
  auto alone = m.forward(a_src, a_mask, a_pos, query, heads);
  auto batched = m.forward(ab_src, ab_mask, ab_pos, query, heads);

  REQUIRE(batched.valid_ratios.at({1, 0, 0}) == 4.0 / 6.0);
  REQUIRE(batched.valid_ratios.at({1, 0, 1}) == 3.0 / 4.0);
  REQUIRE(batched.refined_boxes.size() == (refine ? 2u : 0u));
  for (int l = 0; l < 2; ++l) {
    INFO("decoder layer " << l);
    REQUIRE_ALLCLOSE(batched.hs[size_t(l)].value()[1], alone.hs[size_t(l)].value()[0], 1e-9, 1e-11);
    REQUIRE_ALLCLOSE(batched.inter_references[size_t(l)].value()[1], alone.inter_references[size_t(l)].value()[0],
                     1e-9, 1e-11);
    if (refine)
      REQUIRE_ALLCLOSE(batched.refined_boxes[size_t(l)].value()[1], alone.refined_boxes[size_t(l)].value()[0], 1e-9,
                       1e-11);
  }
  // Memory at A's valid positions, level by level.
  int64_t a_start = 0, b_start = 0;
  for (int l = 0; l < 2; ++l) {
    for (int64_t y = 0; y < ah[l]; ++y)
      for (int64_t x = 0; x < aw[l]; ++x)
        REQUIRE_ALLCLOSE(batched.memory.value()[1][b_start + y * bw[l] + x],
                         alone.memory.value()[0][a_start + y * aw[l] + x], 1e-9, 1e-11);
    a_start += ah[l] * aw[l];
    b_start += bh[l] * bw[l];
  }
}

TEST_CASE("Deformable encoder reference points are pixel centres over the valid size", "[deformable_transformer]") {
  using Enc = DeformableTransformerEncoder<8, 2, 16, 2, 1, 1, float>;
  auto shapes = Tensor<int64_t>::from({2, 2}, {2, 4, 1, 2});
  // valid ratios (w, h): level 0 3/4 wide, fully high; level 1 1/2 wide.
  auto vr = Tensor<float>::from({1, 2, 2}, {0.75f, 1.f, 0.5f, 1.f});
  auto ref = Enc::get_reference_points(shapes, vr);  // [1, 10, 2, 2]
  REQUIRE(ref.shape() == Shape({1, 10, 2, 2}));
  // Level 0 pixel (x = 1, y = 1): ((1.5 / 3), (1.5 / 2)) scaled by each level's ratios.
  REQUIRE(ref.at({0, 5, 0, 0}) == Approx(0.5 * 0.75));
  REQUIRE(ref.at({0, 5, 0, 1}) == Approx(0.75));
  REQUIRE(ref.at({0, 5, 1, 0}) == Approx(0.5 * 0.5));
  // Level 1 pixel x = 0 of a 2-wide map with 1 valid column: 0.5 / 1.
  REQUIRE(ref.at({0, 8, 1, 0}) == Approx(0.5 * 0.5));
  REQUIRE(ref.at({0, 8, 0, 0}) == Approx(0.5 * 0.75));
}

TEST_CASE("Two-stage proposals: valid sizes, bounds and the inf fill", "[deformable_transformer]") {
  constexpr DeformableTransformerConfig c{.d_model = 8, .nhead = 2, .num_encoder_layers = 1, .num_decoder_layers = 1,
                                          .dim_feedforward = 8, .num_feature_levels = 2, .dec_n_points = 1,
                                          .enc_n_points = 1, .two_stage = true, .two_stage_num_proposals = 3};
  using TS = DeformableTransformer<c, float>;
  // Level 0: one row of 60 (x = 0 gives 0.5 / 60 < 0.01, x = 59 gives 59.5 / 60 > 0.99);
  // level 1: 2 x 2 with the second column padded.
  auto shapes = Tensor<int64_t>::from({2, 2}, {1, 60, 2, 2});
  auto mask = Tensor<uint8_t>::zeros({1, 64});
  mask.at({0, 61}) = mask.at({0, 63}) = 1;
  Tensor<uint8_t> invalid;
  auto p = TS::encoder_output_proposals(mask, shapes, invalid);  // [1, 64, 4]
  const float inf = std::numeric_limits<float>::infinity();
  REQUIRE(p.at({0, 0, 0}) == inf);
  REQUIRE(p.at({0, 59, 3}) == inf);
  REQUIRE(invalid.at({0, 0}) == 1);
  REQUIRE(invalid.at({0, 59}) == 1);
  REQUIRE(invalid.at({0, 1}) == 0);
  REQUIRE(p.at({0, 1, 0}) == Approx(std::log((1.5f / 60) / (1 - 1.5f / 60))));
  REQUIRE(p.at({0, 1, 2}) == Approx(std::log(0.05f / 0.95f)));
  // Level 1: x = 0 over one valid column is 0.5; the level's size is 0.05 * 2 = 0.1.
  REQUIRE(p.at({0, 60, 0}) == Approx(0.f).margin(1e-6));
  REQUIRE(p.at({0, 60, 1}) == Approx(std::log(0.25f / 0.75f)));
  REQUIRE(p.at({0, 60, 3}) == Approx(std::log(0.1f / 0.9f)));
  REQUIRE(p.at({0, 61, 0}) == inf);
  REQUIRE(invalid.at({0, 61}) == 1);
  REQUIRE(invalid.at({0, 62}) == 0);

  // get_proposal_pos_embed: sin / cos pairs of sigmoid(logit) * 2 pi over temperature^(2k / 4).
  auto pe = TS::get_proposal_pos_embed(Tensor<float>::from({1, 1, 4}, {0.f, inf, 0.f, 0.f}));
  REQUIRE(pe.shape() == Shape({1, 1, 16}));
  const float pi = float(std::numbers::pi);
  REQUIRE(pe.at({0, 0, 0}) == Approx(std::sin(pi)).margin(1e-6));
  REQUIRE(pe.at({0, 0, 1}) == Approx(std::cos(pi)));
  REQUIRE(pe.at({0, 0, 2}) == Approx(std::sin(pi / 100)));
  REQUIRE(pe.at({0, 0, 5}) == Approx(std::cos(2 * pi)));
}

TEST_CASE("DeformableTransformer input errors", "[deformable_transformer]") {
  Small m;
  Rng rng(1);
  m.init(rng);
  Var<double> s0(Tensor<double>::zeros({1, 16, 2, 2})), s1(Tensor<double>::zeros({1, 16, 1, 1}));
  auto m0 = Tensor<uint8_t>::zeros({1, 2, 2}), m1 = Tensor<uint8_t>::zeros({1, 1, 1});
  Var<double> q(Tensor<double>::zeros({5, 32}));
  REQUIRE_THROWS_WITH(m.forward({s0}, {m0}, {s0}, q), Catch::Contains("expected 2 levels"));
  REQUIRE_THROWS_WITH(m.forward({s0, s1}, {m0, m0}, {s0, s1}, q), Catch::Contains("masks[1] must be [1, 1, 1]"));
  REQUIRE_THROWS_WITH(m.forward({s0, s1}, {m0, m1}, {s0, s0}, q), Catch::Contains("pos_embeds[1]"));
  REQUIRE_THROWS_WITH(m.forward({s0, s1}, {m0, m1}, {s0, s1}, Var<double>(Tensor<double>::zeros({5, 16}))),
                      Catch::Contains("query_embed must be [Q, 32]"));
  auto out = m.forward({s0, s1}, {m0, m1}, {s0, s1}, q);
  REQUIRE(out.hs.size() == 2);
  REQUIRE(out.hs[1].shape() == Shape({1, 5, 16}));
  REQUIRE(out.memory.shape() == Shape({1, 5, 16}));
  REQUIRE(out.init_reference.shape() == Shape({1, 5, 2}));
}
