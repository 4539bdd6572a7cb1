// DETR's post-norm transformer against facebookresearch/detr's Transformer
// (tests/reference/make_detr_transformer.py, eval mode): every decoder layer's output, the
// encoder memory, and the gradients of src, pos, query_embed and named parameters; parameter
// names against the reference's state_dict keys; gradchecks of single layers in double;
// padding invariance; train / eval and dropout configuration.
#include <algorithm>
#include <set>

#include "detr/ops/reduce.hpp"
#include "detr/transformer/detr_transformer.hpp"
#include "parity.hpp"

using namespace detr;
using detr::test::reference;

namespace {
using Small = DetrTransformer<32, 4, 64, 2, 2>;

std::set<std::string> reference_keys() {
  const auto& names = reference("detr_transformer_weights").names();
  return {names.begin(), names.end()};
}
}  // namespace

TEST_CASE("DetrTransformer parameter names are the reference state_dict keys", "[detr_transformer]") {
  Small m;
  std::set<std::string> names;
  for (auto& [n, t] : state_dict(m)) names.insert(n);
  auto keys = reference_keys();
  REQUIRE(keys.size() == 2 * 12 + 2 * 18 + 2);
  REQUIRE(names == keys);
}

TEST_CASE("DetrTransformer matches facebookresearch/detr's Transformer", "[parity][detr_transformer]") {
  const auto& ref = reference("detr_transformer");
  Small m;
  Rng rng(0);
  m.init(rng);
  load_state_dict(m, reference("detr_transformer_weights"));  // strict: no name missing or extra
  eval(m);
  Var<float> src(ref.get<float>("src"), true), pos(ref.get<float>("pos"), true),
      query(ref.get<float>("query_embed"), true);
  auto mask = ref.get<uint8_t>("mask");
  auto out = m.forward(src, mask, query, pos);
  REQUIRE(out.hs.shape() == Shape({2, 2, 7, 32}));
  REQUIRE(out.layers.size() == 2);
  REQUIRE_ALLCLOSE(out.memory.value(), ref.get<float>("memory"), 1e-4, 1e-5);
  REQUIRE_ALLCLOSE(out.hs.value(), ref.get<float>("hs"), 1e-4, 1e-5);
  for (int l = 0; l < 2; ++l) {
    INFO("decoder layer " << l);
    REQUIRE_ALLCLOSE(out.layers[l].value(), ref.get<float>("hs")[l], 1e-4, 1e-5);
  }

  Var<float> loss = sum(out.hs * Var<float>(ref.get<float>("grad_hs"))) +
                    sum(out.memory * Var<float>(ref.get<float>("grad_memory")));
  loss.backward();
  REQUIRE_ALLCLOSE(src.grad(), ref.get<float>("grad.src"), 1e-4, 1e-5);
  REQUIRE_ALLCLOSE(pos.grad(), ref.get<float>("grad.pos"), 1e-4, 1e-5);
  REQUIRE_ALLCLOSE(query.grad(), ref.get<float>("grad.query_embed"), 1e-4, 1e-5);
  int checked = 0;
  for (auto& p : named_parameters(m)) {
    if (!ref.contains("grad." + p.name)) continue;
    INFO("parameter " << p.name);
    REQUIRE_ALLCLOSE(p.var->grad(), ref.get<float>("grad." + p.name), 1e-4, 1e-5);
    ++checked;
  }
  REQUIRE(checked == 9);
}

TEST_CASE("DetrEncoderLayer gradcheck in double", "[detr_transformer][gradcheck]") {
  using V = std::vector<Var<double>>;
  DetrEncoderLayer<8, 2, 12, double> layer;
  Rng rng(3);
  layer.init(rng);
  eval(layer);
  auto kpm = Tensor<uint8_t>::from({2, 4}, {0, 0, 0, 0, 0, 0, 1, 1});
  REQUIRE_GRADCHECK([&](const V& x) {
    layer.self_attn.in_proj_weight = x[2];
    layer.ffn.linear1.weight = x[3];
    layer.norm1.weight = x[4];
    return layer.forward(x[0], x[1], kpm);
  }, {detr::test::randn({2, 4, 8}, 1), detr::test::randn({2, 4, 8}, 2), layer.self_attn.in_proj_weight.value().clone(),
      layer.ffn.linear1.weight.value().clone(), layer.norm1.weight.value().clone()});
}

TEST_CASE("DetrDecoderLayer gradcheck in double", "[detr_transformer][gradcheck]") {
  using V = std::vector<Var<double>>;
  DetrDecoderLayer<8, 2, 12, double> layer;
  Rng rng(4);
  layer.init(rng);
  eval(layer);
  auto kpm = Tensor<uint8_t>::from({2, 5}, {0, 0, 0, 0, 1, 0, 0, 0, 0, 0});
  REQUIRE_GRADCHECK([&](const V& x) {
    layer.multihead_attn.in_proj_weight = x[4];
    layer.ffn.linear2.weight = x[5];
    return layer.forward(x[0], x[1], kpm, x[2], x[3]);
  }, {detr::test::randn({2, 3, 8}, 1), detr::test::randn({2, 5, 8}, 2), detr::test::randn({2, 5, 8}, 3),
      detr::test::randn({2, 3, 8}, 4), layer.multihead_attn.in_proj_weight.value().clone(),
      layer.ffn.linear2.weight.value().clone()});
}

// Image A (3x4) alone, and batched with a 3x6 image B with A padded to 3x6: A's memory at its
// valid positions and its decoder outputs must not change, since padded keys are masked out
// and attention does not depend on the order of its keys.
TEST_CASE("DetrTransformer is invariant to padding from a larger batch-mate", "[detr_transformer]") {
  DetrTransformer<16, 4, 32, 2, 2, double> m;
  Rng rng(7);
  m.init(rng);
  eval(m);
  const int64_t D = 16, Hh = 3, Wa = 4, Wb = 6, Q = 5;
  auto a_src = detr::test::randn({Hh, Wa, D}, 11), a_pos = detr::test::randn({Hh, Wa, D}, 12);
  auto b_src = detr::test::randn({Hh, Wb, D}, 13), b_pos = detr::test::randn({Hh, Wb, D}, 14);
  Var<double> query(detr::test::randn({Q, D}, 15));

  auto alone = m.forward(Var<double>(a_src.reshape({1, Hh * Wa, D})), Tensor<uint8_t>::zeros({1, Hh * Wa}), query,
                         Var<double>(a_pos.reshape({1, Hh * Wa, D})));

  // Batch [B, A padded]; padded cells get garbage values that the mask must hide.
  auto src = Tensor<double>::full({2, Hh * Wb, D}, 1e3), pos = Tensor<double>::full({2, Hh * Wb, D}, -7.0);
  auto mask = Tensor<uint8_t>::zeros({2, Hh * Wb});
  std::copy_n(b_src.data(), b_src.numel(), src.data());
  std::copy_n(b_pos.data(), b_pos.numel(), pos.data());
  for (int64_t y = 0; y < Hh; ++y)
    for (int64_t x = 0; x < Wb; ++x) {
      const int64_t cell = y * Wb + x;
      if (x >= Wa) {
        mask.at({1, cell}) = 1;
        continue;
      }
      std::copy_n(a_src.data() + (y * Wa + x) * D, D, src.data() + (Hh * Wb + cell) * D);
      std::copy_n(a_pos.data() + (y * Wa + x) * D, D, pos.data() + (Hh * Wb + cell) * D);
    }
  auto batched = m.forward(Var<double>(src), mask, query, Var<double>(pos));

  for (int l = 0; l < 2; ++l) {
    INFO("decoder layer " << l);
    REQUIRE_ALLCLOSE(batched.layers[l].value()[1], alone.layers[l].value()[0], 1e-10, 1e-12);
  }
  for (int64_t y = 0; y < Hh; ++y)
    for (int64_t x = 0; x < Wa; ++x)
      REQUIRE_ALLCLOSE(batched.memory.value()[1][y * Wb + x], alone.memory.value()[0][y * Wa + x], 1e-10, 1e-12);
}

TEST_CASE("DetrTransformer init, dropout and train / eval", "[detr_transformer]") {
  Small m;
  Rng rng(1);
  m.init(rng);
  // xavier_uniform_ on every matrix: the bound for in_proj_weight [96, 32] is sqrt(6 / 128).
  float bound = std::sqrt(6.f / 128.f), mx = 0;
  for (float v : m.encoder.layers[0].self_attn.in_proj_weight.value().to_vector()) mx = std::max(mx, std::abs(v));
  REQUIRE(mx <= bound);
  REQUIRE(mx > 0.9f * bound);
  REQUIRE(m.decoder.norm.weight.value().to_vector() == std::vector<float>(32, 1.f));
  REQUIRE(m.decoder.layers[1].ffn.dropout.p == 0.1);
  REQUIRE(m.decoder.layers[1].multihead_attn.dropout == 0.1);

  Var<float> src(Rng(2).normal_tensor<float>({1, 6, 32})), pos(Rng(3).normal_tensor<float>({1, 6, 32})),
      query(Rng(4).normal_tensor<float>({3, 32}));
  eval(m);
  auto e1 = m.forward(src, {}, query, pos).hs.value().clone();
  auto e2 = m.forward(src, {}, query, pos).hs.value().clone();
  REQUIRE(e1.to_vector() == e2.to_vector());
  train(m);
  REQUIRE(m.encoder.layers[0].dropout1.training);
  auto t1 = m.forward(src, {}, query, pos).hs.value().clone();
  REQUIRE(t1.to_vector() != e1.to_vector());
  m.set_dropout(0.0);
  REQUIRE(m.encoder.layers[1].self_attn.dropout == 0.0);
  auto t0 = m.forward(src, {}, query, pos).hs.value();
  REQUIRE_ALLCLOSE(t0, e1, 1e-6, 1e-7);
}

TEST_CASE("DetrTransformer rejects bad shapes", "[detr_transformer]") {
  Small m;
  Var<float> src(Tensor<float>::zeros({1, 6, 32})), pos(Tensor<float>::zeros({1, 6, 32})),
      query(Tensor<float>::zeros({3, 32}));
  REQUIRE_THROWS_WITH(m.forward(Var<float>(Tensor<float>::zeros({1, 6, 16})), {}, query, pos),
                      Catch::Contains("src must be [B, HW, 32]"));
  REQUIRE_THROWS_WITH(m.forward(src, {}, query, Var<float>(Tensor<float>::zeros({1, 5, 32}))),
                      Catch::Contains("pos [1, 5, 32] must match src"));
  REQUIRE_THROWS_WITH(m.forward(src, {}, query, Var<float>()), Catch::Contains("pos must be given"));
  REQUIRE_THROWS_WITH(m.forward(src, Tensor<uint8_t>::zeros({1, 5}), query, pos), Catch::Contains("mask must be"));
  REQUIRE_THROWS_WITH(m.forward(src, {}, Var<float>(Tensor<float>::zeros({3, 16})), pos),
                      Catch::Contains("query_embed must be"));
}
