#include "detr/ops/attention.hpp"
#include "detr/ops/linalg.hpp"
#include "detr/ops/shape.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;
using V = std::vector<Var<double>>;

namespace {
// Unfused reference: per head softmax(q k^T / sqrt(dh) + mask) v, from the basic ops.
Tensor<double> naive_attention(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v,
                               int H, const Tensor<double>& additive, const Tensor<uint8_t>& pad) {
  int64_t B = q.dim(0), Lq = q.dim(1), Lk = k.dim(1), D = q.dim(2), Dh = D / H;
  auto out = Tensor<double>::zeros({B, Lq, D});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Lq; ++i) {
        std::vector<double> s(Lk);
        double m = -INFINITY;
        for (int64_t j = 0; j < Lk; ++j) {
          double acc = 0;
          for (int64_t d = 0; d < Dh; ++d) acc += q.at({b, i, h * Dh + d}) * k.at({b, j, h * Dh + d});
          s[j] = acc / std::sqrt(double(Dh)) + (additive.defined() ? additive.at({i, j}) : 0.0);
          if (pad.defined() && pad.at({b, j})) s[j] = -INFINITY;
          m = std::max(m, s[j]);
        }
        double z = 0;
        for (auto& x : s) z += (x = std::exp(x - m));
        for (int64_t j = 0; j < Lk; ++j)
          for (int64_t d = 0; d < Dh; ++d) out.at({b, i, h * Dh + d}) += s[j] / z * v.at({b, j, h * Dh + d});
      }
  return out;
}
}  // namespace

TEST_CASE("fused attention equals the unfused definition", "[attention]") {
  auto q = randn({2, 3, 8}, 1), k = randn({2, 5, 8}, 2), v = randn({2, 5, 8}, 3);
  auto add = randn({3, 5}, 4);
  auto pad = Tensor<uint8_t>::from({2, 5}, {0, 0, 0, 1, 1, 0, 1, 0, 0, 0});
  AttentionMask<double> mask;
  mask.additive = add;
  auto got = multi_head_attention(Var<double>(q), Var<double>(k), Var<double>(v), 2, mask, pad).value();
  REQUIRE_ALLCLOSE(got, naive_attention(q, k, v, 2, add, pad), 1e-12, 1e-12);
}

TEST_CASE("boolean attn_mask blocks exactly like -inf added", "[attention]") {
  auto q = randn({1, 4, 4}, 1), k = randn({1, 4, 4}, 2), v = randn({1, 4, 4}, 3);
  AttentionMask<double> blocked, additive;
  blocked.blocked = Tensor<uint8_t>::zeros({4, 4});
  additive.additive = Tensor<double>::zeros({4, 4});
  for (int i = 0; i < 4; ++i)
    for (int j = i + 1; j < 4; ++j) {  // causal
      blocked.blocked.at({i, j}) = 1;
      additive.additive.at({i, j}) = -INFINITY;
    }
  auto a = multi_head_attention(Var<double>(q), Var<double>(k), Var<double>(v), 1, blocked).value();
  auto b = multi_head_attention(Var<double>(q), Var<double>(k), Var<double>(v), 1, additive).value();
  REQUIRE(a.to_vector() == b.to_vector());
  // the first query sees only the first key
  for (int d = 0; d < 4; ++d) REQUIRE(a.at({0, 0, d}) == Approx(v.at({0, 0, d})));
}

TEST_CASE("attention gradcheck: masks, per-head masks, dropout", "[attention][gradcheck]") {
  auto q = randn({2, 3, 4}, 1), k = randn({2, 5, 4}, 2), v = randn({2, 5, 4}, 3);
  REQUIRE_GRADCHECK([](const V& x) { return multi_head_attention(x[0], x[1], x[2], 2); }, {q, k, v});
  auto pad = Tensor<uint8_t>::from({2, 5}, {0, 0, 1, 0, 1, 1, 0, 0, 0, 0});
  AttentionMask<double> per_head;
  per_head.additive = randn({4, 3, 5}, 9);
  per_head.blocked = Tensor<uint8_t>::zeros({4, 3, 5});
  per_head.blocked.at({1, 2, 0}) = 1;
  REQUIRE_GRADCHECK([&](const V& x) { return multi_head_attention(x[0], x[1], x[2], 2, per_head, pad); }, {q, k, v});
  REQUIRE_GRADCHECK([&](const V& x) {
    Rng rng(11);
    return multi_head_attention(x[0], x[1], x[2], 2, {}, pad, 0.3, true, &rng);
  }, {q, k, v});
}

TEST_CASE("attention errors name the tensors and shapes", "[attention]") {
  Var<float> q(Tensor<float>::zeros({2, 3, 8})), k(Tensor<float>::zeros({2, 5, 8}));
  REQUIRE_THROWS_WITH(multi_head_attention(q, k, k, 3), Catch::Contains("not divisible by 3"));
  REQUIRE_THROWS_WITH(multi_head_attention(q, k, k, 2, {}, Tensor<uint8_t>::zeros({2, 4})),
                      Catch::Contains("key_padding_mask must be [2, 5]"));
  AttentionMask<float> m;
  m.additive = Tensor<float>::zeros({5, 3});
  REQUIRE_THROWS_WITH(multi_head_attention(q, k, k, 2, m), Catch::Contains("attn_mask must be [3, 5]"));
}
