#include "detr/ops/dropout.hpp"
#include "helpers.hpp"

using namespace detr;
using V = std::vector<Var<double>>;

TEST_CASE("dropout keeps about 1 - p, scales by 1 / (1 - p), and is seeded", "[dropout]") {
  Var<float> x(Tensor<float>::ones({100000}));
  Rng a(7), b(7), c(8);
  auto ya = dropout(x, 0.1, true, a).value(), yb = dropout(x, 0.1, true, b).value();
  auto yc = dropout(x, 0.1, true, c).value();
  REQUIRE(ya.to_vector() == yb.to_vector());
  REQUIRE(ya.to_vector() != yc.to_vector());
  int64_t zeros = 0;
  for (float v : ya.to_vector()) {
    if (v == 0.f) ++zeros;
    else REQUIRE(v == Approx(1.0f / 0.9f));
  }
  REQUIRE(zeros > 9500);
  REQUIRE(zeros < 10500);
  Rng r(1);
  REQUIRE(dropout(x, 0.1, false, r).value().shares_storage_with(x.value()));  // eval: identity
  REQUIRE_THROWS_WITH(dropout(x, 1.0, true, r), Catch::Contains("[0, 1)"));
}

TEST_CASE("dropout gradcheck", "[dropout][gradcheck]") {
  REQUIRE_GRADCHECK([](const V& v) { Rng r(3); return dropout(v[0], 0.3, true, r); },
                    {detr::test::randn({4, 5}, 1)});
}
