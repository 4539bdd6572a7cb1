#include "detr/nn/embedding.hpp"
#include "helpers.hpp"

using namespace detr;

TEST_CASE("Embedding looks up rows, accumulates repeated-index gradients, and names its weight", "[nn]") {
  Embedding<5, 3> emb;
  Rng rng(2);
  emb.init(rng);
  auto idx = Tensor<int64_t>::from({2, 2}, {4, 0, 4, 1});
  auto y = emb.forward(idx);
  REQUIRE(y.shape() == Shape{2, 2, 3});
  REQUIRE(y.value().at({1, 0, 2}) == emb.weight.value().at({4, 2}));
  y.backward(Tensor<float>::ones(y.shape()));
  REQUIRE(emb.weight.grad().at({4, 1}) == 2.f);
  REQUIRE(emb.weight.grad().at({2, 1}) == 0.f);
  REQUIRE(named_parameters(emb).front().name == "weight");
  REQUIRE_THROWS_WITH(emb.forward(Tensor<int64_t>::from({1}, {5})), Catch::Contains("5"));
}
