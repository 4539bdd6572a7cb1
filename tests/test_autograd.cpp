#include "detr/ops/elementwise.hpp"
#include "detr/ops/linalg.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;

TEST_CASE("gradient accumulates across uses of one input", "[autograd]") {
  Var<double> x(Tensor<double>::from({3}, {1.0, 2.0, 3.0}), true);
  Var<double> y = x * x + x;  // dy/dx = 2x + 1
  y.backward(Tensor<double>::ones({3}));
  REQUIRE(x.grad().at({0}) == Approx(3.0));
  REQUIRE(x.grad().at({2}) == Approx(7.0));
}

TEST_CASE("leaf grads sharing a buffer stay independent", "[autograd]") {
  Var<double> a(Tensor<double>::from({2}, {1, 2}), true), b(Tensor<double>::from({2}, {3, 4}), true);
  (a + b).backward(Tensor<double>::ones({2}));
  b.mutable_grad().arr() *= 10.0;  // must not leak into a's grad
  REQUIRE(a.grad().at({0}) == 1.0);
  REQUIRE(b.grad().at({0}) == 10.0);
}

TEST_CASE("NoGrad records nothing and detach cuts the graph", "[autograd]") {
  Var<double> x(Tensor<double>::from({2}, {1, 2}), true);
  {
    NoGrad ng;
    REQUIRE_FALSE((x * x).requires_grad());
  }
  Var<double> y = x.detach() * x;
  y.backward(Tensor<double>::ones({2}));
  REQUIRE(x.grad().at({1}) == 2.0);  // only the non-detached factor contributes
}

TEST_CASE("backward twice through a freed graph is an error", "[autograd]") {
  Var<double> x(Tensor<double>::from({1}, {2}), true);
  Var<double> y = x * x;
  y.backward();
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("already freed"));
  Var<double> z = x * 3.0;
  z.backward(true);
  z.backward();  // retain_graph allowed a second pass
  REQUIRE(x.grad().item() == Approx(4.0 + 3.0 + 3.0));
}

TEST_CASE("deep chains backpropagate without recursion", "[autograd]") {
  Var<double> x(Tensor<double>::from({1}, {1}), true);
  Var<double> y = x;
  for (int i = 0; i < 20000; ++i) y = y + 0.0;
  y.backward();
  REQUIRE(x.grad().item() == 1.0);
}

TEST_CASE("gradcheck catches a wrong backward", "[autograd][gradcheck]") {
  auto wrong = [](const std::vector<Var<double>>& v) {
    const Tensor<double> xv = v[0].value();
    auto y = xv.clone();
    y.arr() = y.arr() * y.arr();
    return record("bad_square", y, {v[0]}, [xv](const Tensor<double>& g, auto& in) {
      in.add(0, g.clone());  // should be 2 x g
    });
  };
  auto r = gradcheck(wrong, {randn({4}, 1)});
  REQUIRE_FALSE(r.ok);
}

TEST_CASE("shape errors name the op and both shapes", "[autograd]") {
  Var<float> a(Tensor<float>::zeros({2, 3})), b(Tensor<float>::zeros({4, 5}));
  REQUIRE_THROWS_WITH(a + b, Catch::Contains("add") && Catch::Contains("[2, 3]") && Catch::Contains("[4, 5]"));
  REQUIRE_THROWS_WITH(matmul(a, b), Catch::Contains("matmul") && Catch::Contains("[2, 3]") && Catch::Contains("[4, 5]"));
}
