#include "detr/ops/elementwise.hpp"
#include "detr/ops/shape.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;
using V = std::vector<Var<double>>;

TEST_CASE("reshape is a view with -1 inference", "[shape]") {
  Var<float> x(Tensor<float>::arange(24).reshape({2, 3, 4}));
  auto y = reshape(x, {4, -1});
  REQUIRE(y.shape() == Shape{4, 6});
  REQUIRE(y.value().shares_storage_with(x.value()));
  REQUIRE_THROWS_WITH(reshape(x, {5, -1}), Catch::Contains("[2, 3, 4]"));
}

TEST_CASE("permute and transpose move elements as torch does", "[shape]") {
  Var<float> x(Tensor<float>::arange(24).reshape({2, 3, 4}));
  auto p = permute(x, {2, 0, 1}).value();
  REQUIRE(p.shape() == Shape{4, 2, 3});
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 3; ++b)
      for (int c = 0; c < 4; ++c) REQUIRE(p.at({c, a, b}) == x.value().at({a, b, c}));
  auto t = transpose(x, 0, 1).value();  // innermost dim kept: run copies
  REQUIRE(t.shape() == Shape{3, 2, 4});
  REQUIRE(t.at({2, 1, 3}) == x.value().at({1, 2, 3}));
  REQUIRE_THROWS_WITH(permute(x, {0, 0, 1}), Catch::Contains("repeated"));
}

TEST_CASE("reshape / permute / transpose gradcheck", "[shape][gradcheck]") {
  auto x = randn({2, 3, 4}, 3);
  REQUIRE_GRADCHECK([](const V& v) { return reshape(v[0], {3, 8}); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return permute(v[0], {1, 2, 0}); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return transpose(v[0], -1, 0) * 2.0; }, {x});
}

TEST_CASE("concat / split / slice move elements as torch does", "[shape]") {
  Var<float> a(Tensor<float>::arange(6).reshape({2, 3}));
  Var<float> b(Tensor<float>::arange(4).reshape({2, 2}));
  auto c = concat({a, b, a}, -1).value();
  REQUIRE(c.shape() == Shape{2, 8});
  REQUIRE(c.to_vector() == std::vector<float>{0, 1, 2, 0, 1, 0, 1, 2, 3, 4, 5, 2, 3, 3, 4, 5});
  auto c0 = concat<float>({a, a}, 0).value();
  REQUIRE(c0.shape() == Shape{4, 3});
  REQUIRE(c0.at({3, 2}) == 5.0f);

  auto parts = split(Var<float>(c), {3, 2, 3}, 1);
  REQUIRE(parts.size() == 3);
  REQUIRE(parts[1].value().to_vector() == std::vector<float>{0, 1, 2, 3});
  REQUIRE(parts[2].value().to_vector() == a.value().to_vector());

  Var<float> x(Tensor<float>::arange(24).reshape({2, 3, 4}));
  auto s = slice(x, 2, 1, 4, 2).value();  // x[:, :, 1:4:2]
  REQUIRE(s.shape() == Shape{2, 3, 2});
  REQUIRE(s.at({1, 2, 1}) == 23.0f);
  REQUIRE(slice(x, 1, -2, 100).shape() == Shape{2, 2, 4});    // x[:, -2:]
  REQUIRE(slice(x, -1, 3, 1).shape() == Shape{2, 3, 0});      // empty when end < begin
  auto v = slice(x, 0, 1, 2);                                  // contiguous: a view
  REQUIRE(v.value().shares_storage_with(x.value()));
  REQUIRE(v.value().at({0, 0, 0}) == 12.0f);
  auto v1 = slice(Var<float>(x.value().reshape({1, 6, 4})), 1, 2, 5);  // leading 1 dims: still a view
  REQUIRE(v1.value().shares_storage_with(x.value()));
  REQUIRE(v1.value().at({0, 0, 0}) == 8.0f);
}

TEST_CASE("expand / repeat / unsqueeze / squeeze follow torch", "[shape]") {
  Var<float> x(Tensor<float>::from({3, 1}, {1, 2, 3}));
  auto e = expand(x, {2, -1, 4}).value();
  REQUIRE(e.shape() == Shape{2, 3, 4});
  REQUIRE(e.at({1, 2, 3}) == 3.0f);
  REQUIRE(e.at({0, 1, 0}) == 2.0f);

  Var<float> y(Tensor<float>::from({2, 2}, {1, 2, 3, 4}));
  auto r = repeat(y, {2, 1, 3}).value();  // torch: y.repeat(2, 1, 3)
  REQUIRE(r.shape() == Shape{2, 2, 6});
  REQUIRE(r.to_vector() == std::vector<float>{1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4,
                                              1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4});
  REQUIRE(repeat(y, {0, 2}).shape() == Shape{0, 4});

  REQUIRE(unsqueeze(y, 0).shape() == Shape{1, 2, 2});
  REQUIRE(unsqueeze(y, -1).shape() == Shape{2, 2, 1});
  REQUIRE(unsqueeze(y, 1).shape() == Shape{2, 1, 2});
  REQUIRE(squeeze(x, 1).shape() == Shape{3});
  REQUIRE(squeeze(x, 0).shape() == Shape{3, 1});  // not size 1: unchanged, as torch
  REQUIRE(squeeze(Var<float>(Tensor<float>::zeros({1, 3, 1}))).shape() == Shape{3});
}

TEST_CASE("concat / split / slice / expand / repeat gradcheck", "[shape][gradcheck]") {
  auto a = randn({2, 3, 4}, 11), b = randn({2, 1, 4}, 12), c = randn({3, 1}, 13);
  REQUIRE_GRADCHECK([](const V& v) { return concat<double>({v[0], v[1], v[0]}, 1); }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return concat<double>({v[1], v[0]}, -2) * 3.0; }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return split(v[0], {1, 0, 3}, -1)[2]; }, {a});
  REQUIRE_GRADCHECK([](const V& v) {
    auto p = split(v[0], {2, 1}, 1);
    return p[0] * p[1];  // two pieces of one input: gradients add
  }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return slice(v[0], 2, -3, 4, 2); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return slice(v[0], 0, 1, 2); }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return expand(v[0], {2, 3, 4}); }, {c});
  REQUIRE_GRADCHECK([](const V& v) { return expand(v[0], {2, -1, 3, 4}); }, {b});
  REQUIRE_GRADCHECK([](const V& v) { return repeat(v[0], {2, 1, 3}); }, {c});
  REQUIRE_GRADCHECK([](const V& v) { return repeat(v[0], {1, 2, 1, 2}); }, {b});
  REQUIRE_GRADCHECK([](const V& v) { return squeeze(unsqueeze(v[0], 1), 1); }, {c});
}

TEST_CASE("layout op errors name the op and the shapes", "[shape]") {
  Var<float> a(Tensor<float>::zeros({2, 3}));
  Var<float> b(Tensor<float>::zeros({3, 3}));
  REQUIRE_THROWS_WITH(concat<float>({a, b}, 1), Catch::Contains("concat: tensor 1 has shape [3, 3]"));
  REQUIRE_THROWS_WITH(concat<float>({}, 0), Catch::Contains("no tensors"));
  REQUIRE_THROWS_WITH(concat<float>({a}, 2), Catch::Contains("concat: dim 2 out of range"));
  REQUIRE_THROWS_WITH(split(a, {1, 1}, 1), Catch::Contains("add up to 2") && Catch::Contains("is 3"));
  REQUIRE_THROWS_WITH(slice(a, 0, 0, 2, 0), Catch::Contains("step must be positive"));
  REQUIRE_THROWS_WITH(expand(a, {2, 4}), Catch::Contains("cannot grow dim 1 from 3 to 4"));
  REQUIRE_THROWS_WITH(expand(a, {3}), Catch::Contains("fewer than x [2, 3]"));
  REQUIRE_THROWS_WITH(expand(a, {-1, 2, 3}), Catch::Contains("-1 is not allowed"));
  REQUIRE_THROWS_WITH(repeat(a, {2}), Catch::Contains("repeat: 1 repeats given for x [2, 3]"));
  REQUIRE_THROWS_WITH(unsqueeze(a, 3), Catch::Contains("unsqueeze: dim 3"));
  REQUIRE_THROWS_WITH(squeeze(a, -3), Catch::Contains("squeeze: dim -3"));
}

TEST_CASE("expand without growth is a view", "[shape]") {
  Var<float> x(Tensor<float>::arange(6).reshape({2, 3}));
  auto e = expand(x, {1, 2, -1});
  REQUIRE(e.shape() == Shape{1, 2, 3});
  REQUIRE(e.value().shares_storage_with(x.value()));
}
