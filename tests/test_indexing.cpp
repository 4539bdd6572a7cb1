
#include <cmath>

#include "detr/ops/elementwise.hpp"
#include "detr/ops/indexing.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;
using V = std::vector<Var<double>>;

namespace {
// Index tensors are built from ints: GCC 12.2 with AVX-512 miscompiles some 64-bit constant
// lists (std::vector<int64_t>{1, 1, 1, 0} becomes {1, 1, 1, 1} under -march=native).
Tensor<int64_t> idx(const Shape& s, std::initializer_list<int> v) {
  return Tensor<int64_t>::from(s, std::vector<int64_t>(v.begin(), v.end()));
}
std::vector<int64_t> ints(std::initializer_list<int> v) { return std::vector<int64_t>(v.begin(), v.end()); }
Tensor<int64_t> random_index(const Shape& s, int64_t n, uint64_t seed) {
  Rng rng(seed);
  auto t = Tensor<int64_t>::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = rng.randint(0, n - 1);
  return t;
}
}  // namespace

TEST_CASE("gather picks along dim as torch.gather", "[indexing]") {
  Var<float> x(Tensor<float>::arange(12).reshape({3, 4}));
  auto g1 = gather(x, 1, idx({3, 2}, {3, 0, 1, 1, 0, 2})).value();
  REQUIRE(g1.to_vector() == std::vector<float>{3, 0, 5, 5, 8, 10});
  auto g0 = gather(x, 0, idx({2, 3}, {2, 1, 0, 0, 0, 2})).value();  // smaller than x in dim 1
  REQUIRE(g0.to_vector() == std::vector<float>{8, 5, 2, 0, 1, 10});
  auto gn = gather(x, -1, idx({1, 1}, {2})).value();
  REQUIRE(gn.item() == 2.0f);
}

TEST_CASE("gather gradcheck, repeated indices accumulate", "[indexing][gradcheck]") {
  auto x = randn({3, 4, 5}, 1);
  auto i1 = random_index({3, 6, 5}, 4, 2);  // more picks than entries: repeats
  auto i2 = random_index({2, 3, 5}, 5, 3);
  auto i0 = random_index({4, 2, 3}, 3, 4);
  REQUIRE_GRADCHECK([&](const V& v) { return gather(v[0], 1, i1); }, {x});
  REQUIRE_GRADCHECK([&](const V& v) { return gather(v[0], -1, i2); }, {x});
  REQUIRE_GRADCHECK([&](const V& v) { return gather(v[0], 0, i0); }, {x});
}

TEST_CASE("index_select and embedding copy rows; repeats add up deterministically", "[indexing][gradcheck]") {
  Var<float> x(Tensor<float>::arange(12).reshape({3, 4}));
  auto s = index_select(x, 1, idx({3}, {3, 3, 0})).value();
  REQUIRE(s.shape() == Shape{3, 3});
  REQUIRE(s.to_vector() == std::vector<float>{3, 3, 0, 7, 7, 4, 11, 11, 8});
  auto e = embedding(x, idx({2, 2}, {2, 0, 2, 1})).value();
  REQUIRE(e.shape() == Shape{2, 2, 4});
  REQUIRE(e.at({1, 0, 3}) == 11.0f);

  auto w = randn({5, 3, 4}, 5);
  auto rep = idx({7}, {4, 0, 4, 4, 2, 0, 1});
  REQUIRE_GRADCHECK([&](const V& v) { return index_select(v[0], 0, rep); }, {w});
  REQUIRE_GRADCHECK([&](const V& v) { return index_select(v[0], 1, idx({4}, {2, 2, 0, 2})); }, {w});
  REQUIRE_GRADCHECK([&](const V& v) { return index_select(v[0], -1, idx({2}, {3, 1})); }, {w});
  REQUIRE_GRADCHECK([&](const V& v) { return embedding(v[0], idx({2, 3}, {1, 1, 0, 3, 1, 0})); },
                    {randn({4, 3}, 6)});

  // Large enough to run in parallel: the gradient of 50k repeated picks is the same bits for
  // one thread and two, and equals the count of each row.
  const int64_t n = 100, d = 64;
  auto many = random_index({50000}, n, 7);
  auto run = [&] {
    Var<float> tbl(Tensor<float>::ones({n, d}), true);
    auto y = embedding(tbl, many);
    y.backward(Tensor<float>::ones(y.shape()));
    return tbl.grad().clone();
  };
  int prev = detr::num_threads();
  detr::set_num_threads(1);
  auto one = run();
  detr::set_num_threads(2);
  auto two = run();
  detr::set_num_threads(prev);
  REQUIRE(one.to_vector() == two.to_vector());
  std::vector<float> count(n, 0);
  for (int64_t i = 0; i < many.numel(); ++i) count[many.data()[i]] += 1;
  for (int64_t r = 0; r < n; ++r) REQUIRE(two.at({r, d - 1}) == count[r]);
}

TEST_CASE("masked_fill broadcasts the mask; filled positions get no gradient", "[indexing][gradcheck]") {
  Var<float> x(Tensor<float>::arange(6).reshape({2, 3}));
  auto row = Tensor<uint8_t>::from({3}, {0, 1, 0});
  auto y = masked_fill(x, row, -INFINITY).value();
  REQUIRE(y.at({1, 1}) == -INFINITY);
  REQUIRE(y.at({1, 2}) == 5.0f);
  auto col = Tensor<uint8_t>::from({2, 1}, {1, 0});
  REQUIRE(masked_fill(x, col, 7.0).value().to_vector() == std::vector<float>{7, 7, 7, 3, 4, 5});

  auto xd = randn({2, 3, 4}, 8);
  auto m = Tensor<uint8_t>::from({3, 1}, {1, 0, 1});
  REQUIRE_GRADCHECK([&](const V& v) { return masked_fill(v[0], m, 0.5f); }, {xd});
  Var<double> leaf(xd.clone(), true);
  auto out = masked_fill(leaf, m, 0.0);
  out.backward(Tensor<double>::ones(out.shape()));
  REQUIRE(leaf.grad().at({1, 0, 2}) == 0.0);
  REQUIRE(leaf.grad().at({1, 1, 2}) == 1.0);
}

TEST_CASE("topk: sorted, nan largest, ties in torch's order", "[indexing]") {
  // Expected indices are torch 1.13's (see topk's comment): ties are not in index order.
  Var<float> x(Tensor<float>::from({2, 5}, {1, 3, 3, 0, 3, NAN, 2, -1, NAN, 2}));
  auto t = topk(x, 3);
  REQUIRE(t.indices.to_vector() == ints({2, 4, 1, 0, 3, 4}));
  REQUIRE(t.values.value().at({0, 2}) == 3.0f);
  REQUIRE(std::isnan(t.values.value().at({1, 1})));
  auto s = topk(x, 2, 1, false);
  REQUIRE(s.indices.to_vector() == ints({3, 0, 2, 4}));
  REQUIRE(s.values.value().to_vector() == std::vector<float>{0, 1, -1, 2});
  auto c = topk(x, 1, 0);  // along the outer dim (strided rows)
  REQUIRE(c.indices.to_vector() == ints({1, 0, 0, 1, 0}));
  REQUIRE(topk(x, 0).values.shape() == Shape{2, 0});

  // k * 64 <= n takes partial_sort, larger k nth_element + sort.
  auto big = Tensor<float>::empty({1, 1000});
  for (int64_t i = 0; i < 1000; ++i) big.data()[i] = float(i % 10);
  auto a = topk(Var<float>(big), 5), b = topk(Var<float>(big), 500);
  REQUIRE(a.indices.to_vector() == ints({19, 9, 39, 49, 29}));
  REQUIRE(std::vector<int64_t>(b.indices.data(), b.indices.data() + 4) == ints({309, 209, 219, 229}));
  REQUIRE(std::vector<int64_t>(b.indices.data() + 495, b.indices.data() + 500) == ints({35, 475, 795, 695, 85}));
  for (int64_t j = 0; j < 500; ++j) REQUIRE(b.values.value().at({0, j}) == float(9 - j / 100));
}

TEST_CASE("topk gradcheck", "[indexing][gradcheck]") {
  auto x = randn({3, 6, 4}, 9);
  REQUIRE_GRADCHECK([](const V& v) { return topk(v[0], 2).values; }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return topk(v[0], 3, 1, false).values; }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return topk(v[0], 3, 0).values; }, {x});
}

TEST_CASE("indexing errors name the op, the index and the valid range", "[indexing]") {
  Var<float> x(Tensor<float>::zeros({3, 4}));
  REQUIRE_THROWS_WITH(embedding(x, idx({3}, {0, 7, 1})),
                      Catch::Contains("embedding: index 7 at position 1") && Catch::Contains("N = 3"));
  REQUIRE_THROWS_WITH(embedding(x, idx({1}, {-1})), Catch::Contains("index -1"));
  REQUIRE_THROWS_WITH(embedding(Var<float>(Tensor<float>::zeros({3})), idx({1}, {0})),
                      Catch::Contains("weight must be [N, D]"));
  REQUIRE_THROWS_WITH(gather(x, 1, idx({3, 1}, {0, 4, 0})), Catch::Contains("gather: index 4"));
  REQUIRE_THROWS_WITH(gather(x, 1, idx({3}, {0, 1, 0})), Catch::Contains("rank of x [3, 4]"));
  REQUIRE_THROWS_WITH(gather(x, 1, idx({4, 1}, {0, 1, 0, 0})), Catch::Contains("larger than x"));
  REQUIRE_THROWS_WITH(gather(x, 2, idx({3, 1}, {0, 1, 0})), Catch::Contains("gather: dim 2 out of range"));
  REQUIRE_THROWS_WITH(index_select(x, 0, idx({2}, {1, 3})), Catch::Contains("index_select: index 3"));
  REQUIRE_THROWS_WITH(index_select(x, 0, idx({1, 1}, {1})), Catch::Contains("must be 1-d"));
  REQUIRE_THROWS_WITH(masked_fill(x, Tensor<uint8_t>::zeros({3, 1, 4}), 0.f),
                      Catch::Contains("does not broadcast to x [3, 4]"));
  REQUIRE_THROWS_WITH(masked_fill(x, Tensor<uint8_t>::zeros({2}), 0.f), Catch::Contains("cannot be broadcast"));
  REQUIRE_THROWS_WITH(topk(x, 5), Catch::Contains("topk: k = 5 out of range"));
}

TEST_CASE("masked_fill with attention-style masks matches brute force", "[indexing]") {
  Rng rng(10);
  auto x = rng.normal_tensor<float>({2, 8, 40, 300});  // [B, H, L, S], large enough for threads
  for (Shape ms : {Shape{2, 1, 1, 300}, Shape{2, 1, 40, 1}, Shape{300}, Shape{2, 8, 40, 300}}) {
    INFO("mask " << ms);
    auto m = Tensor<uint8_t>::empty(ms);
    for (int64_t i = 0; i < m.numel(); ++i) m.data()[i] = rng.bernoulli(0.3);
    auto y = masked_fill(Var<float>(x), m, -1e9f).value();
    auto st = internal::broadcast_strides(ms, x.shape());
    bool ok = true;
    for (int64_t i = 0; i < x.numel(); ++i) {
      int64_t mo = 0, rem = i;
      for (int d = 3; d >= 0; --d) {
        mo += rem % x.shape()[d] * st[d];
        rem /= x.shape()[d];
      }
      ok = ok && y.data()[i] == (m.data()[mo] ? -1e9f : x.data()[i]);
    }
    REQUIRE(ok);
  }
}
