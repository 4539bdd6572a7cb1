// MSDeformAttn layer against the official module (tests/reference/make_ms_deform_attn.py, the
// CUDA core replaced by the grid_sample reference): outputs and the gradients of the query,
// reference points, input and every parameter, at encoder and decoder shapes, with 2-d
// reference points and 4-d reference boxes, with and without a padding mask. Also the official
// names and initialisation, a gradcheck in double, and the input errors.
#include "detr/nn/ms_deform_attn.hpp"
#include "parity.hpp"

using namespace detr;
using detr::test::reference;

namespace {
template <class M>
void check_layer(M& m, const std::string& c) {
  const auto& ref = reference("ms_deform_attn");
  load_state_dict(m, ref, true, c + ".");
  Var<float> query(ref.get<float>(c + ".query"), true), points(ref.get<float>(c + ".reference_points"), true),
      src(ref.get<float>(c + ".input_flatten"), true);
  Tensor<uint8_t> mask;
  if (ref.contains(c + ".input_padding_mask")) mask = ref.get<uint8_t>(c + ".input_padding_mask");
  Var<float> y = m.forward(query, points, src, ref.get<int64_t>(c + ".spatial_shapes"),
                           ref.get<int64_t>(c + ".level_start_index"), mask);
  REQUIRE_ALLCLOSE(y.value(), ref.get<float>(c + ".out"), 1e-4, 1e-5);
  y.backward(ref.get<float>(c + ".grad_out"));
  REQUIRE_ALLCLOSE(query.grad(), ref.get<float>(c + ".grad.query"), 1e-4, 1e-4);
  REQUIRE_ALLCLOSE(src.grad(), ref.get<float>(c + ".grad.input_flatten"), 1e-4, 1e-5);
  // Reference points collect location gradients scaled by the level sizes (see the op test).
  REQUIRE_ALLCLOSE(points.grad(), ref.get<float>(c + ".grad.reference_points"), 1e-4, 1e-4);
  detr::test::require_parameter_grads(m, ref, c, 1e-4, 1e-4);
  zero_grad(m);
}
}  // namespace

TEST_CASE("MSDeformAttn parity: encoder, 2-d reference points", "[ms_deform_attn][parity]") {
  MSDeformAttn<16, 2, 3, 2> m;
  check_layer(m, "layer_encoder_2d");
}
TEST_CASE("MSDeformAttn parity: encoder, 2-d reference points, padding mask", "[ms_deform_attn][parity]") {
  MSDeformAttn<16, 2, 3, 2> m;
  check_layer(m, "layer_encoder_2d_mask");
}
TEST_CASE("MSDeformAttn parity: decoder, 2-d reference points", "[ms_deform_attn][parity]") {
  MSDeformAttn<16, 4, 2, 3> m;
  check_layer(m, "layer_decoder_2d");
}
TEST_CASE("MSDeformAttn parity: decoder, 4-d reference boxes, padding mask", "[ms_deform_attn][parity]") {
  MSDeformAttn<16, 4, 2, 3> m;
  check_layer(m, "layer_decoder_4d_mask");
}

TEST_CASE("MSDeformAttn names and initialisation follow the official module", "[ms_deform_attn]") {
  MSDeformAttn<16, 2, 3, 2> m;
  std::vector<std::string> names;
  for (auto& p : named_parameters(m)) names.push_back(p.name);
  REQUIRE(names == std::vector<std::string>{"sampling_offsets.weight", "sampling_offsets.bias",
                                            "attention_weights.weight", "attention_weights.bias", "value_proj.weight",
                                            "value_proj.bias", "output_proj.weight", "output_proj.bias"});
  Rng rng(1);
  m.init(rng);
  const auto& ref = reference("ms_deform_attn");
  // Deterministic parts equal the reference's; the xavier draws are checked by their bound.
  REQUIRE_ALLCLOSE(m.sampling_offsets.bias.value(), ref.get<float>("init.sampling_offsets.bias"), 0, 1e-6);
  for (const char* k : {"sampling_offsets.weight", "attention_weights.weight", "attention_weights.bias",
                        "value_proj.bias", "output_proj.bias"}) {
    INFO(k);
    REQUIRE(ref.get<float>(std::string("init.") + k).arr().abs().maxCoeff() == 0.0f);
  }
  REQUIRE(m.sampling_offsets.weight.value().arr().abs().maxCoeff() == 0.0f);
  REQUIRE(m.attention_weights.weight.value().arr().abs().maxCoeff() == 0.0f);
  REQUIRE(m.attention_weights.bias.value().arr().abs().maxCoeff() == 0.0f);
  REQUIRE(m.value_proj.bias.value().arr().abs().maxCoeff() == 0.0f);
  const float bound = std::sqrt(6.0f / 32.0f);
  REQUIRE(m.value_proj.weight.value().arr().abs().maxCoeff() <= bound);
  REQUIRE(m.output_proj.weight.value().arr().abs().maxCoeff() <= bound);
  REQUIRE(m.value_proj.weight.value().arr().abs().maxCoeff() > 0.5f * bound);
}

TEST_CASE("MSDeformAttn gradcheck in double (2-d points and 4-d boxes, padding mask)", "[ms_deform_attn][gradcheck]") {
  using V = std::vector<Var<double>>;
  MSDeformAttn<4, 2, 2, 2, double> m;
  Rng rng(7);
  m.init(rng);
  m.sampling_offsets.weight.mutable_value().copy_(rng.normal_tensor<double>({16, 4}, 0, 0.3));
  m.attention_weights.weight.mutable_value().copy_(rng.normal_tensor<double>({8, 4}, 0, 0.3));
  const auto shapes = Tensor<int64_t>::from({2, 2}, {3, 3, 2, 2});
  const auto starts = Tensor<int64_t>::from({2}, {0, 9});
  auto mask = Tensor<uint8_t>::zeros({1, 13});
  mask.data()[4] = mask.data()[10] = 1;
  auto query = detr::test::randn({1, 3, 4}, 1), src = detr::test::randn({1, 13, 4}, 2);
  for (int dim : {2, 4}) {
    INFO("reference points of size " << dim);
    auto points = detr::test::rand_uniform({1, 3, 2, dim}, 3, 0.1, 0.9);
    REQUIRE_GRADCHECK([&](const V& x) {
      m.sampling_offsets.weight = x[3];
      return m.forward(x[0], x[1], x[2], shapes, starts, mask);
    }, {query, points, src, m.sampling_offsets.weight.value().clone()});
  }
}

TEST_CASE("MSDeformAttn input errors", "[ms_deform_attn][errors]") {
  MSDeformAttn<8, 2, 2, 2> m;
  const auto shapes = Tensor<int64_t>::from({2, 2}, {2, 2, 1, 1});
  const auto starts = Tensor<int64_t>::from({2}, {0, 4});
  Var<float> q(Tensor<float>::zeros({1, 3, 8})), src(Tensor<float>::zeros({1, 5, 8})),
      pts(Tensor<float>::zeros({1, 3, 2, 2}));
  REQUIRE_NOTHROW(m.forward(q, pts, src, shapes, starts));
  REQUIRE_THROWS_WITH(m.forward(q, Var<float>(Tensor<float>::zeros({1, 3, 2, 3})), src, shapes, starts),
                      Catch::Contains("reference_points must be [1, 3, 2, 2] or [1, 3, 2, 4]"));
  REQUIRE_THROWS_WITH(m.forward(Var<float>(Tensor<float>::zeros({1, 3, 6})), pts, src, shapes, starts),
                      Catch::Contains("query must be [B, Q, 8]"));
  REQUIRE_THROWS_WITH(m.forward(q, pts, Var<float>(Tensor<float>::zeros({1, 6, 8})), shapes, starts),
                      Catch::Contains("S = 6"));
  REQUIRE_THROWS_WITH(m.forward(q, pts, src, shapes, starts, Tensor<uint8_t>::zeros({1, 4})),
                      Catch::Contains("input_padding_mask must be [1, 5]"));
  REQUIRE_THROWS_WITH(m.forward(q, pts, src, Tensor<int64_t>::from({1, 2}, {2, 2}), starts),
                      Catch::Contains("spatial_shapes must be [2, 2]"));
}
