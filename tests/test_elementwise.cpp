#include "detr/ops/elementwise.hpp"
#include "detr/ops/reduce.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::rand_uniform;
using detr::test::randn;
using V = std::vector<Var<double>>;

TEST_CASE("broadcasting binary ops: forward values", "[elementwise]") {
  Var<float> a(Tensor<float>::from({2, 3}, {1, 2, 3, 4, 5, 6}));
  Var<float> b(Tensor<float>::from({3}, {10, 20, 30}));
  Var<float> c(Tensor<float>::from({2, 1}, {2, 4}));
  auto s = (a + b).value();
  REQUIRE(s.shape() == Shape{2, 3});
  REQUIRE(s.at({1, 2}) == 36.0f);
  auto d = (a / c).value();
  REQUIRE(d.at({1, 0}) == 1.0f);
  REQUIRE((a - b).value().at({0, 1}) == -18.0f);
  REQUIRE((b * c).value().shape() == Shape{2, 3});
}

TEST_CASE("binary ops gradcheck with broadcasting", "[elementwise][gradcheck]") {
  auto a = randn({2, 3, 4}, 1), b = randn({3, 1}, 2), c = rand_uniform({4}, 3, 0.5, 2.0);
  REQUIRE_GRADCHECK([](const V& v) { return v[0] + v[1]; }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return v[0] - v[1]; }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return v[0] * v[1]; }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return v[0] / v[1]; }, {a, c});
  REQUIRE_GRADCHECK([](const V& v) { return v[1] / v[0]; }, {c, a});
  REQUIRE_GRADCHECK([](const V& v) { return (v[0] * 2.5 + 1.0) / 4.0 - 3.0; }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return 1.0 - v[0]; }, {a});
}

TEST_CASE("activations gradcheck", "[elementwise][gradcheck]") {
  auto x = randn({3, 5}, 7);
  // keep away from the kinks of relu / abs / clamp where finite differences are undefined
  for (int64_t i = 0; i < x.numel(); ++i)
    if (std::abs(x.data()[i]) < 1e-2) x.data()[i] = 0.5;
  REQUIRE_GRADCHECK([](const V& v) { return relu(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return gelu(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return sigmoid(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return detr::tanh(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return detr::exp(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return detr::abs(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return square(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return clamp(v[0], -0.7, 0.9); }, {x});
  auto p = rand_uniform({3, 5}, 8, 0.1, 3.0);
  REQUIRE_GRADCHECK([](const V& v) { return detr::log(v[0]); }, {p});
  REQUIRE_GRADCHECK([](const V& v) { return detr::sqrt(v[0]); }, {p});
}

TEST_CASE("activation values match torch", "[elementwise]") {
  Var<double> x(Tensor<double>::from({4}, {-2.0, -0.5, 0.0, 1.5}));
  auto g = gelu(x).value();  // torch.nn.functional.gelu (exact)
  REQUIRE(g.at({0}) == Approx(-0.04550026389635842).epsilon(1e-12));
  REQUIRE(g.at({1}) == Approx(-0.15426876936299344).epsilon(1e-12));
  REQUIRE(g.at({3}) == Approx(1.399789198096713).epsilon(1e-12));
  REQUIRE(sigmoid(x).value().at({3}) == Approx(0.8175744761936437).epsilon(1e-12));
}

TEST_CASE("inverse_sigmoid clamps as the reference and inverts sigmoid", "[elementwise][gradcheck]") {
  Var<double> x(Tensor<double>::from({5}, {-0.5, 0.0, 0.3, 1.0, 2.0}));
  auto y = inverse_sigmoid(x).value();
  REQUIRE(y.at({0}) == Approx(std::log(1e-5)));  // clamp(0,1) then x1 clamped to eps
  REQUIRE(y.at({1}) == Approx(std::log(1e-5)));
  REQUIRE(y.at({2}) == Approx(std::log(0.3 / 0.7)));
  REQUIRE(y.at({3}) == Approx(-std::log(1e-5)));
  REQUIRE(y.at({4}) == Approx(-std::log(1e-5)));
  auto p = rand_uniform({6}, 3, 0.05, 0.95);
  REQUIRE_GRADCHECK([](const V& v) { return inverse_sigmoid(v[0]); }, {p});
  REQUIRE_GRADCHECK([](const V& v) { return inverse_sigmoid(sigmoid(v[0])); }, {randn({6}, 4)});
}

// The broadcast loops merge dimensions and walk rows with an odometer; check them against a
// plain multi-index loop on random shapes, each dim of each operand kept, set to 1 or dropped.
TEST_CASE("broadcast_binary and sum_to agree with a naive multi-index loop", "[elementwise]") {
  Rng rng(21);
  for (int trial = 0; trial < 300; ++trial) {
    const int rank = 1 + int(rng.uniform() * 6);
    Shape out, sa, sb;
    for (int d = 0; d < rank; ++d) out.push_back(1 + int64_t(rng.uniform() * 4));
    const int drop_a = int(rng.uniform() * rank), drop_b = int(rng.uniform() * rank);
    for (int d = drop_a; d < rank; ++d) sa.push_back(rng.uniform() < 0.4 ? 1 : out[d]);
    for (int d = drop_b; d < rank; ++d) sb.push_back(rng.uniform() < 0.4 ? 1 : out[d]);
    Shape s = internal::broadcast_shapes(sa, sb, "test");
    auto a = rng.normal_tensor<double>(sa), b = rng.normal_tensor<double>(sb);
    auto got = internal::broadcast_binary(a, b, "test", [](double x, double y) { return x * 3 + y; });
    REQUIRE(got.shape() == s);
    auto expected_sum_a = Tensor<double>::zeros(sa);
    const auto ca = internal::broadcast_strides(sa, s), cb = internal::broadcast_strides(sb, s);
    for (int64_t i = 0; i < got.numel(); ++i) {
      int64_t oa = 0, ob = 0;
      for (int64_t d = s.rank() - 1, r = i; d >= 0; --d) {
        oa += (r % s[int(d)]) * ca[size_t(d)];
        ob += (r % s[int(d)]) * cb[size_t(d)];
        r /= s[int(d)];
      }
      INFO("trial " << trial << ": " << sa << " op " << sb << ", element " << i);
      REQUIRE(got.data()[i] == a.data()[oa] * 3 + b.data()[ob]);
      expected_sum_a.data()[oa] += got.data()[i];
    }
    REQUIRE_ALLCLOSE(internal::sum_to(got, sa), expected_sum_a, 1e-12, 1e-12);
  }
}

TEST_CASE("relu keeps NaN, as torch.relu does", "[elementwise][nan]") {
  Var<float> x(Tensor<float>::from({4}, {-1.f, std::numeric_limits<float>::quiet_NaN(), 2.f, 0.f}), true);
  Var<float> y = relu(x);
  REQUIRE(y.value().data()[0] == 0.f);
  REQUIRE(std::isnan(y.value().data()[1]));
  REQUIRE(y.value().data()[2] == 2.f);
  sum(y).backward();
  REQUIRE(x.grad().data()[1] == 0.f);  // torch: grad * (out > 0), false for NaN
  REQUIRE(x.grad().data()[2] == 1.f);
}
