// Parity with PyTorch 1.13 (tests/reference/make_ops.py): outputs and input gradients for a
// fixed upstream gradient, float32, rtol 1e-4 / atol 1e-5.
#include <cmath>
#include <functional>

#include "detr/io/safetensors.hpp"
#include "detr/ops/indexing.hpp"
#include "detr/ops/reduce.hpp"
#include "detr/ops/shape.hpp"
#include "helpers.hpp"

using namespace detr;
using VF = std::vector<Var<float>>;

namespace {
const io::SafetensorsFile& ref() {
  static const auto file = io::SafetensorsFile::load(std::string(DETR_TEST_DATA_DIR) + "/ops_reference.safetensors");
  return file;
}

// Runs fn on the stored inputs of `name`, backpropagates the stored dy, compares y and every dx.
void check_case(const std::string& name, const std::function<Var<float>(const VF&)>& fn) {
  INFO("case " << name);
  VF xs;
  for (int i = 0; ref().contains(name + ".x" + std::to_string(i)); ++i)
    xs.emplace_back(ref().get<float>(name + ".x" + std::to_string(i)), true);
  auto y = fn(xs);
  REQUIRE_ALLCLOSE(y.value(), ref().get<float>(name + ".y"), 1e-4, 1e-5);
  y.backward(ref().get<float>(name + ".dy"));
  for (size_t i = 0; i < xs.size(); ++i) {
    INFO("input " << i);
    REQUIRE_ALLCLOSE(xs[i].grad(), ref().get<float>(name + ".dx" + std::to_string(i)), 1e-4, 1e-5);
  }
}
Tensor<int64_t> index(const std::string& name) { return ref().get<int64_t>(name); }
}  // namespace

TEST_CASE("sum / mean match torch", "[parity][reduce]") {
  check_case("sum_dims", [](const VF& v) { return sum(v[0], {0, 2}); });
  check_case("sum_keep", [](const VF& v) { return sum(v[0], -2, true); });
  check_case("sum_all", [](const VF& v) { return sum(v[0]); });
  check_case("mean_dims", [](const VF& v) { return mean(v[0], {1, 2}); });
  check_case("mean_keep", [](const VF& v) { return mean(v[0], {0, -1}, true); });
  check_case("mean_all", [](const VF& v) { return mean(v[0]); });
}

TEST_CASE("topk with ties matches torch: values, indices and gradients", "[parity][indexing]") {
  struct Case {
    const char* name;
    int64_t k;
    int dim;
    bool largest;
  };
  for (Case c : {Case{"topk_largest", 7, -1, true}, Case{"topk_smallest", 7, -1, false},
                 Case{"topk_half", 30, 1, true}, Case{"topk_mid", 4, 1, true}}) {
    INFO("case " << c.name);
    Var<float> x(ref().get<float>(std::string(c.name) + ".x0"));
    REQUIRE(topk(x, c.k, c.dim, c.largest).indices.to_vector() ==
            index(std::string(c.name) + ".indices").to_vector());
    check_case(c.name, [c](const VF& v) { return topk(v[0], c.k, c.dim, c.largest).values; });
  }
}

TEST_CASE("topk with nans matches torch: nans largest, their order as torch leaves it", "[parity][indexing]") {
  Var<float> x(ref().get<float>("nans"));
  for (bool largest : {true, false}) {
    const std::string name = largest ? "topk_nan_largest" : "topk_nan_smallest";
    INFO("case " << name);
    auto t = topk(x, largest ? 10 : 70, -1, largest);
    REQUIRE(t.indices.to_vector() == index(name + ".indices").to_vector());
    auto want = ref().get<float>(name + ".values");
    for (int64_t i = 0; i < want.numel(); ++i) {
      const float a = t.values.value().data()[i], b = want.data()[i];
      REQUIRE((a == b || (std::isnan(a) && std::isnan(b))));
    }
  }
}

TEST_CASE("max along a dim matches torch: first of ties", "[parity][reduce]") {
  for (const auto& c : {std::pair{"max_last", -1}, std::pair{"max_first", 0}}) {
    const char* name = c.first;
    const int dim = c.second;  // a plain variable: clang 14 cannot capture structured bindings
    INFO("case " << name);
    Var<float> x(ref().get<float>(std::string(name) + ".x0"));
    REQUIRE(max(x, dim).indices.to_vector() == index(std::string(name) + ".indices").to_vector());
    check_case(name, [dim](const VF& v) { return max(v[0], dim).values; });
  }
}

TEST_CASE("gather / index_select / embedding / masked_fill match torch", "[parity][indexing]") {
  check_case("gather", [](const VF& v) { return gather(v[0], 1, index("gather.index")); });
  check_case("index_select", [](const VF& v) { return index_select(v[0], 1, index("index_select.index")); });
  check_case("embedding", [](const VF& v) { return embedding(v[0], index("embedding.index")); });
  check_case("masked_fill", [](const VF& v) {
    return masked_fill(v[0], ref().get<uint8_t>("masked_fill.mask"), -2.5f);
  });
}

TEST_CASE("concat / split / slice / repeat / expand match torch", "[parity][shape]") {
  check_case("concat", [](const VF& v) { return concat<float>({v[0], v[1], v[0]}, 1); });
  check_case("split", [](const VF& v) { return split(v[0], {2, 4, 1}, 1)[1]; });
  check_case("slice", [](const VF& v) { return slice(slice(v[0], 1, 1, 6, 2), 2, -3, 5); });
  check_case("repeat", [](const VF& v) { return repeat(v[0], {2, 1, 3, 1}); });
  check_case("expand", [](const VF& v) { return expand(slice(v[0], 1, 0, 1), {4, 3, 6, 5}); });
}
