// MultiheadAttention against torch.nn.MultiheadAttention(batch_first=True)
// (tests/reference/make_layers.py): no mask, bool and float attn_mask, key_padding_mask, and a
// per-head 3-d mask with padding; query, key and value of different lengths.
#include "detr/nn/multihead_attention.hpp"
#include "parity.hpp"

using namespace detr;
using detr::test::reference;

namespace {
void check_mha(const std::string& c) {
  const auto& ref = reference("layers");
  MultiheadAttention<16, 4> mha;
  load_state_dict(mha, ref, true, c + ".");
  Var<float> q(ref.get<float>(c + ".query"), true), k(ref.get<float>(c + ".key"), true),
      v(ref.get<float>(c + ".value"), true);
  AttentionMask<float> mask;
  Tensor<uint8_t> kpm;
  if (ref.contains(c + ".attn_mask")) {
    if (ref.entry(c + ".attn_mask").dtype == io::DType::BOOL) mask.blocked = ref.get<uint8_t>(c + ".attn_mask");
    else mask.additive = ref.get<float>(c + ".attn_mask");
  }
  if (ref.contains(c + ".key_padding_mask")) kpm = ref.get<uint8_t>(c + ".key_padding_mask");
  Var<float> y = mha.forward(q, k, v, mask, kpm);
  REQUIRE_ALLCLOSE(y.value(), ref.get<float>(c + ".out"), 1e-4, 1e-5);
  y.backward(ref.get<float>(c + ".grad_out"));
  REQUIRE_ALLCLOSE(q.grad(), ref.get<float>(c + ".grad.query"), 1e-4, 1e-5);
  REQUIRE_ALLCLOSE(k.grad(), ref.get<float>(c + ".grad.key"), 1e-4, 1e-5);
  REQUIRE_ALLCLOSE(v.grad(), ref.get<float>(c + ".grad.value"), 1e-4, 1e-5);
  detr::test::require_parameter_grads(mha, ref, c);
}
}  // namespace

TEST_CASE("MultiheadAttention parity: no mask", "[parity][mha]") { check_mha("mha_plain"); }
TEST_CASE("MultiheadAttention parity: boolean attn_mask", "[parity][mha]") { check_mha("mha_bool_mask"); }
TEST_CASE("MultiheadAttention parity: additive attn_mask", "[parity][mha]") { check_mha("mha_float_mask"); }
TEST_CASE("MultiheadAttention parity: key_padding_mask", "[parity][mha]") { check_mha("mha_kpm"); }
TEST_CASE("MultiheadAttention parity: 3-d attn_mask with key_padding_mask", "[parity][mha]") {
  check_mha("mha_3d_mask_kpm");
}

TEST_CASE("MultiheadAttention gradcheck in double", "[mha][gradcheck]") {
  using V = std::vector<Var<double>>;
  MultiheadAttention<8, 2, double> mha;
  Rng rng(5);
  mha.init(rng);
  auto kpm = Tensor<uint8_t>::from({2, 4}, {0, 0, 0, 1, 0, 1, 0, 0});
  REQUIRE_GRADCHECK([&](const V& x) {
    mha.in_proj_weight = x[3];
    return mha.forward(x[0], x[1], x[2], {}, kpm);
  }, {detr::test::randn({2, 3, 8}, 1), detr::test::randn({2, 4, 8}, 2), detr::test::randn({2, 4, 8}, 3),
      mha.in_proj_weight.value().clone()});
}

TEST_CASE("MultiheadAttention names and init", "[mha]") {
  MultiheadAttention<16, 4> mha;
  std::vector<std::string> names;
  for (auto& p : named_parameters(mha)) names.push_back(p.name);
  REQUIRE(names == std::vector<std::string>{"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"});
  Rng rng(1);
  mha.init(rng);
  REQUIRE(mha.in_proj_bias.value().to_vector() == std::vector<float>(48, 0.f));
  float bound = std::sqrt(6.f / 64.f), mx = 0;
  for (float v : mha.in_proj_weight.value().to_vector()) mx = std::max(mx, std::abs(v));
  REQUIRE(mx <= bound);
  REQUIRE(mx > 0.9f * bound);
}
