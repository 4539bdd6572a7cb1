#include <algorithm>

#include "detr/core/rng.hpp"
#include "detr/ops/dropout.hpp"
#include "detr/ops/elementwise.hpp"
#include "detr/ops/linalg.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;
using detr::test::same_bits;
using V = std::vector<Var<double>>;

TEST_CASE("matmul forward against a naive loop", "[linalg]") {
  auto a = randn({2, 3, 4}, 1), b = randn({4, 5}, 2);
  auto c = matmul(Var<double>(a), Var<double>(b)).value();
  REQUIRE(c.shape() == Shape{2, 3, 5});
  for (int i = 0; i < 2; ++i)
    for (int m = 0; m < 3; ++m)
      for (int n = 0; n < 5; ++n) {
        double s = 0;
        for (int k = 0; k < 4; ++k) s += a.at({i, m, k}) * b.at({k, n});
        REQUIRE(c.at({i, m, n}) == Approx(s).epsilon(1e-12));
      }
}

TEST_CASE("matmul / batched / transposed / linear gradcheck", "[linalg][gradcheck]") {
  REQUIRE_GRADCHECK([](const V& v) { return matmul(v[0], v[1]); }, {randn({2, 3, 4}, 1), randn({4, 5}, 2)});
  REQUIRE_GRADCHECK([](const V& v) { return matmul(v[0], v[1]); }, {randn({2, 2, 3, 4}, 3), randn({2, 2, 4, 5}, 4)});
  REQUIRE_GRADCHECK([](const V& v) { return matmul_nt(v[0], v[1]); }, {randn({3, 4}, 5), randn({6, 4}, 6)});
  REQUIRE_GRADCHECK([](const V& v) { return matmul_nt(v[0], v[1]); }, {randn({2, 3, 4}, 7), randn({2, 6, 4}, 8)});
  REQUIRE_GRADCHECK([](const V& v) { return linear(v[0], v[1], v[2]); },
                    {randn({2, 3, 4}, 9), randn({5, 4}, 10), randn({5}, 11)});
  REQUIRE_GRADCHECK([](const V& v) { return linear(v[0], v[1]); }, {randn({3, 4}, 12), randn({2, 4}, 13)});
  REQUIRE_GRADCHECK([](const V& v) { return linear_relu(v[0], v[1], v[2]); },
                    {randn({2, 3, 4}, 14), randn({5, 4}, 15), randn({5}, 16)});
  REQUIRE_GRADCHECK([](const V& v) { return linear_relu(v[0], v[1]); }, {randn({3, 4}, 17), randn({6, 4}, 18)});
}

TEST_CASE("linear_relu equals relu(linear) in value and gradients (float, fused kernel)", "[linalg]") {
  Rng rng(4);
  auto x = rng.normal_tensor<float>({2, 150, 64}), w = rng.normal_tensor<float>({300, 64}, 0, 0.1);
  auto b = rng.normal_tensor<float>({300}, 0, 0.1), g = rng.normal_tensor<float>({2, 150, 300});
  Var<float> x1(x, true), w1(w, true), b1(b, true), x2(x, true), w2(w, true), b2(b, true);
  auto fused = linear_relu(x1, w1, b1);
  auto composed = relu(linear(x2, w2, b2));
  fused.backward(g);
  composed.backward(g);
  // Same products (the clamp only moves into the store), so the same bits.
  REQUIRE(same_bits(fused.value(), composed.value()));
  REQUIRE(same_bits(x1.grad(), x2.grad()));
  REQUIRE(same_bits(w1.grad(), w2.grad()));
  REQUIRE(same_bits(b1.grad(), b2.grad()));
  const auto y = fused.value();
  REQUIRE(std::count(y.data(), y.data() + y.numel(), 0.f) > y.numel() / 4);  // the clamp is exercised
}

TEST_CASE("linear_relu_dropout equals dropout(relu(linear)): same mask, values and gradients", "[linalg]") {
  Rng rng(5);
  auto x = rng.normal_tensor<float>({2, 150, 64}), w = rng.normal_tensor<float>({300, 64}, 0, 0.1);
  auto b = rng.normal_tensor<float>({300}, 0, 0.1), g = rng.normal_tensor<float>({2, 150, 300});
  Var<float> x1(x, true), w1(w, true), b1(b, true), x2(x, true), w2(w, true), b2(b, true);
  Rng r1(9), r2(9);
  auto fused = linear_relu_dropout(x1, w1, b1, 0.3, true, r1);
  auto composed = dropout(relu(linear(x2, w2, b2)), 0.3, true, r2);
  REQUIRE(r1.next_u64() == r2.next_u64());  // one draw each: the streams stay in step
  fused.backward(g);
  composed.backward(g);
  // Gradients may differ in the sign of a zero (0 * -g in the composed masks), never otherwise.
  auto same_values = [](const Tensor<float>& a, const Tensor<float>& c) {
    return a.shape() == c.shape() && std::equal(a.data(), a.data() + a.numel(), c.data());
  };
  REQUIRE(same_bits(fused.value(), composed.value()));
  REQUIRE(same_values(x1.grad(), x2.grad()));
  REQUIRE(same_values(w1.grad(), w2.grad()));
  REQUIRE(same_values(b1.grad(), b2.grad()));
  // About 30% dropped on top of about half clamped.
  const auto y = fused.value();
  const double zeros = double(std::count(y.data(), y.data() + y.numel(), 0.f)) / double(y.numel());
  REQUIRE(zeros > 0.55);
  REQUIRE(zeros < 0.75);
  // Eval (or p = 0): plain linear_relu, and no draw from the stream.
  Rng r3(9);
  REQUIRE(same_bits(linear_relu_dropout(x1, w1, b1, 0.3, false, r3).value(), linear_relu(x1, w1, b1).value()));
  REQUIRE(r3.next_u64() == Rng(9).next_u64());
  REQUIRE_THROWS_WITH(linear_relu_dropout(x1, w1, b1, 1.0, true, r3), Catch::Contains("probability must be in [0, 1)"));
}

TEST_CASE("linear_relu_dropout gradcheck (a fixed mask)", "[linalg][gradcheck]") {
  REQUIRE_GRADCHECK(
      [](const V& v) {
        Rng rng(3);  // the same mask at every evaluation
        return linear_relu_dropout(v[0], v[1], v[2], 0.25, true, rng);
      },
      {randn({3, 5, 4}, 19), randn({6, 4}, 20), randn({6}, 21)});
}

TEST_CASE("matmul shape errors", "[linalg]") {
  Var<float> a(Tensor<float>::zeros({2, 3, 4})), b(Tensor<float>::zeros({3, 4, 5}));
  REQUIRE_THROWS_WITH(matmul(a, b), Catch::Contains("batch dimensions differ"));
  Var<float> w(Tensor<float>::zeros({5, 3}));
  REQUIRE_THROWS_WITH(linear(a, w), Catch::Contains("in_features 3"));
  REQUIRE_THROWS_WITH(linear_relu(a, w), Catch::Contains("linear_relu: input [2, 3, 4] does not end in in_features 3"));
}
