
#include <cmath>

#include "detr/ops/elementwise.hpp"
#include "detr/ops/reduce.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;
using V = std::vector<Var<double>>;

namespace {
// Brute-force sum over the dims in `mask` (keepdim layout), in double.
Tensor<double> naive_sum(const Tensor<float>& x, const std::vector<bool>& mask) {
  Shape os;
  for (int d = 0; d < x.rank(); ++d) os.push_back(mask[d] ? 1 : x.shape()[d]);
  auto out = Tensor<double>::zeros(os);
  auto xs = contiguous_strides(x.shape()), ost = contiguous_strides(os);
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t o = 0;
    for (int d = 0; d < x.rank(); ++d)
      if (!mask[d]) o += (i / xs[d] % x.shape()[d]) * ost[d];
    out.data()[o] += x.data()[i];
  }
  return out;
}
Tensor<float> randf(const Shape& s, uint64_t seed) { return randn(s, seed).cast<float>(); }
// Expected indices are built from ints: GCC 12.2 with AVX-512 miscompiles some 64-bit constant
// lists (std::vector<int64_t>{1, 1, 1, 0} becomes {1, 1, 1, 1} under -march=native).
std::vector<int64_t> ints(std::initializer_list<int> v) { return std::vector<int64_t>(v.begin(), v.end()); }
}  // namespace

TEST_CASE("sum over every pattern of dims matches brute force", "[reduce]") {
  auto x = randf({3, 4, 5, 6}, 1);
  Var<float> v(x);
  for (int m = 1; m < 16; ++m) {
    std::vector<int> dims;
    std::vector<bool> mask(4);
    for (int d = 0; d < 4; ++d)
      if (m >> d & 1) {
        dims.push_back(d - 4 * (d % 2));  // mixes negative and positive dims
        mask[d] = true;
      }
    auto want = naive_sum(x, mask);
    auto got = sum(v, dims, true).value();
    INFO("mask " << m);
    REQUIRE_ALLCLOSE(got, want, 1e-5, 1e-5);
    auto dropped = sum(v, dims).value();
    REQUIRE(dropped.numel() == got.numel());
    REQUIRE(dropped.rank() == 4 - int(dims.size()));
    auto mean_got = mean(v, dims, true).value();
    auto want_mean = want.clone();
    want_mean.arr() /= double(x.numel() / want.numel());
    REQUIRE_ALLCLOSE(mean_got, want_mean, 1e-5, 1e-6);
  }
}

TEST_CASE("sum / mean of everything are scalars of shape []", "[reduce]") {
  Var<float> x(Tensor<float>::arange(24).reshape({2, 3, 4}));
  auto s = sum(x);
  REQUIRE(s.shape() == Shape{});
  REQUIRE(s.item() == 276.0f);
  REQUIRE(mean(x).item() == 11.5f);
  REQUIRE(sum(x, {0, 1, 2}).shape() == Shape{});
  REQUIRE(sum(x, {-1, 0}, true).shape() == Shape{1, 3, 1});
  REQUIRE(sum(x, {1}).shape() == Shape{2, 4});
  REQUIRE(mean(x, int64_t(-1)).shape() == Shape{2, 3});
  REQUIRE(sum(x, 1).value().to_vector() == std::vector<float>{12, 15, 18, 21, 48, 51, 54, 57});
  Var<float> scalar(Tensor<float>::scalar(2.5f));
  REQUIRE(sum(scalar).item() == 2.5f);
}

TEST_CASE("long float sums keep their digits", "[reduce]") {
  const int64_t n = 3'000'001;
  Var<float> x(Tensor<float>::full({n}, 0.1f));
  const double want = double(0.1f) * double(n);
  REQUIRE(std::abs(double(sum(x).item()) - want) / want < 1e-6);
  Var<float> col(Tensor<float>::full({n, 1}, 0.1f));  // reduced dim is the outer one
  REQUIRE(std::abs(double(sum(col, 0).item()) - want) / want < 1e-6);
}

TEST_CASE("reductions give the same bits for any thread count", "[reduce]") {
  auto x = randf({64, 300, 33}, 5);
  Var<float> v(x);
  auto run = [&] {
    return std::vector<Tensor<float>>{sum(v).value(), sum(v, 0).value(), sum(v, {0, 2}).value(),
                                      mean(v, -1).value(), sum(Var<float>(x.reshape({-1}))).value()};
  };
  int prev = detr::num_threads();
  detr::set_num_threads(1);
  auto one = run();
  detr::set_num_threads(2);
  auto two = run();
  detr::set_num_threads(prev);
  for (size_t i = 0; i < one.size(); ++i) REQUIRE(one[i].to_vector() == two[i].to_vector());
}

TEST_CASE("empty reductions follow torch", "[reduce]") {
  Var<float> x(Tensor<float>::zeros({0, 3}));
  REQUIRE(sum(x).item() == 0.0f);
  REQUIRE(sum(x, 0).value().to_vector() == std::vector<float>{0, 0, 0});
  REQUIRE(std::isnan(mean(x).item()));
  REQUIRE(sum(x, 1).shape() == Shape{0});
}

TEST_CASE("reduce errors name the op, the dim and the shape", "[reduce]") {
  Var<float> x(Tensor<float>::zeros({2, 3}));
  REQUIRE_THROWS_WITH(sum(x, 2), Catch::Contains("sum: dim 2 out of range for x [2, 3]"));
  REQUIRE_THROWS_WITH(mean(x, {-3}), Catch::Contains("mean: dim -3"));
  REQUIRE_THROWS_WITH(sum(x, {1, -1}), Catch::Contains("appears more than once"));
  REQUIRE_THROWS_WITH(sum(x, {}), Catch::Contains("empty dim list"));  // never silently dim 0
  REQUIRE_THROWS_WITH(max(x, 5), Catch::Contains("max: dim 5"));
  REQUIRE_THROWS_WITH(max(Var<float>(Tensor<float>::zeros({2, 0})), 1), Catch::Contains("size 0"));
}

TEST_CASE("sum / mean gradcheck", "[reduce][gradcheck]") {
  auto x = randn({2, 3, 4}, 2);
  REQUIRE_GRADCHECK([](const V& v) { return sum(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return mean(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return sum(v[0], {0, 2}); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return sum(v[0], -1, true); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return mean(v[0], {1}); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return mean(v[0], {-3, -2}, true); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return sum(v[0] * v[0], 0); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return mean(v[0]); }, {randn({1, 5, 1}, 3)});
}

TEST_CASE("max / argmax: first of ties, nan wins, gradient to the winner", "[reduce][gradcheck]") {
  Var<float> x(Tensor<float>::from({2, 4}, {1, 3, 3, 2, NAN, 5, NAN, 0}));
  auto r = max(x, 1);
  REQUIRE(r.values.value().at({0}) == 3.0f);
  REQUIRE(std::isnan(r.values.value().at({1})));
  REQUIRE(r.indices.to_vector() == ints({1, 0}));
  REQUIRE(argmax(x, 0).to_vector() == ints({1, 1, 1, 0}));
  REQUIRE(argmax(x, -1, true).shape() == Shape{2, 1});
  REQUIRE(max(x, 0, true).values.shape() == Shape{1, 4});

  auto y = randn({3, 4, 5}, 4);  // distinct values: finite differences see the same winner
  REQUIRE_GRADCHECK([](const V& v) { return max(v[0], 1).values; }, {y});
  REQUIRE_GRADCHECK([](const V& v) { return max(v[0], -1, true).values; }, {y});
  REQUIRE_GRADCHECK([](const V& v) { return max(v[0], 0).values; }, {y});
}

#include "detr/ops/strided_loops.hpp"

TEST_CASE("strided_loops: strided_copy transposes, broadcasts and coalesces", "[reduce][strided_loops]") {
  // A [3, 4] row-major source copied into its transpose through strides.
  std::vector<float> src(12), dst(12, -1.f);
  for (int i = 0; i < 12; ++i) src[i] = float(i);
  internal::strided_copy(src.data(), {4, 1}, dst.data(), {1, 3}, {3, 4});
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) REQUIRE(dst[c * 3 + r] == src[r * 4 + c]);
  // Stride 0 on the source broadcasts one row to every destination row.
  std::vector<float> out(8, 0.f);
  internal::strided_copy(src.data(), {0, 1}, out.data(), {4, 1}, {2, 4});
  for (int c = 0; c < 4; ++c) REQUIRE(out[4 + c] == src[c]);
  // Contiguous on both sides coalesces into one run.
  std::vector<float> flat(12, 0.f);
  internal::strided_copy(src.data(), {4, 1}, flat.data(), {4, 1}, {3, 4});
  REQUIRE(flat == src);
}
