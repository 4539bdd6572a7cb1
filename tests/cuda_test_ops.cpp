// Every CUDA op against the CPU op on the same inputs: the output and the gradient of every
// input (fp32; the GPU sums in another order, so agreement is to rounding). Exits 77 (ctest:
// skipped) without a GPU (cuda_catch_main.cpp).
#include "detr/core/cuda_tensor.hpp"
#include "detr/gpu/runtime.hpp"
#include "detr/ops/attention.hpp"
#include "detr/ops/dropout.hpp"
#include "detr/ops/elementwise.hpp"
#include "detr/ops/layer_norm.hpp"
#include "detr/ops/linalg.hpp"
#include "detr/ops/reduce.hpp"
#include "detr/ops/shape.hpp"
#include "detr/ops/softmax.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::allclose;

namespace {

using VC = std::vector<Var<float>>;
using VG = std::vector<Var<float, cuda>>;

Tensor<float> randf(const Shape& s, uint64_t seed, float lo = -2, float hi = 2) {
  Rng rng(seed);
  return rng.uniform_tensor<float>(s, lo, hi);
}

// Runs f on the CPU and on the GPU over the same inputs, backpropagates the same random output
// gradient, and compares the outputs and every input's gradient.
template <class F>
void check_op(const char* name, const std::vector<Tensor<float>>& inputs, F f, double rtol = 1e-5,
              double atol = 1e-5) {
  INFO(name);
  VC c;
  VG g;
  for (const auto& t : inputs) {
    c.emplace_back(t.clone(), true);
    g.emplace_back(Tensor<float, cuda>::from_host(t), true);
  }
  Var<float> yc = f(c);
  Var<float, cuda> yg = f(g);
  auto seed = randf(yc.shape(), 1234);
  yc.backward(seed);
  yg.backward(Tensor<float, cuda>::from_host(seed));
  std::string why;
  CHECK(allclose(yg.value().to_host(), yc.value(), rtol, atol, &why));
  INFO("output: " << why);
  for (size_t i = 0; i < inputs.size(); ++i) {
    INFO("gradient of input " << i);
    REQUIRE(g[i].grad().defined() == c[i].grad().defined());
    if (c[i].grad().defined()) {
      CHECK(allclose(g[i].grad().to_host(), c[i].grad(), rtol, atol, &why));
      INFO(why);
    }
  }
}

}  // namespace

TEST_CASE("cuda tensor: copies, views, fill, memory statistics", "[cuda]") {
  auto h = randf({1000, 3}, 1);
  auto d = Tensor<float, cuda>::from_host(h);
  CHECK(d.to_host().to_vector() == h.to_vector());
  auto c = d.clone();
  c.fill_(2.0f);
  CHECK(d.to_host().to_vector() == h.to_vector());  // clone() copied
  CHECK(c[5][1].item() == 2.0f);
  CHECK(d.slice0(10, 12).reshape({6}).to_vector() == h.slice0(10, 12).reshape({6}).to_vector());
  CHECK(Tensor<int64_t, cuda>::full({3}, -7).to_vector() == std::vector<int64_t>{-7, -7, -7});
  const auto before = gpu::memory_stats().in_use;
  {
    auto big = Tensor<float, cuda>::zeros({1 << 20});
    CHECK(gpu::memory_stats().in_use == before + (size_t(4) << 20));
    CHECK(big.slice0(1000, 1001).item() == 0.0f);
  }
  CHECK(gpu::memory_stats().in_use == before);
  CHECK(gpu::memory_stats().peak >= before + (size_t(4) << 20));
  CHECK_THROWS_WITH(d.item(), Catch::Contains("item()"));
}

TEST_CASE("cuda ops: element-wise maps", "[cuda]") {
  auto x = randf({4, 50}, 2), pos = randf({4, 50}, 3, 0.05f, 3.0f), unit = randf({4, 50}, 4, -0.1f, 1.1f);
  check_op("relu", {x}, [](const auto& v) { return relu(v[0]); });
  check_op("gelu", {x}, [](const auto& v) { return gelu(v[0]); });
  check_op("sigmoid", {x}, [](const auto& v) { return sigmoid(v[0]); });
  check_op("tanh", {x}, [](const auto& v) { return detr::tanh(v[0]); });
  check_op("exp", {x}, [](const auto& v) { return detr::exp(v[0]); });
  check_op("log", {pos}, [](const auto& v) { return detr::log(v[0]); });
  check_op("sqrt", {pos}, [](const auto& v) { return detr::sqrt(v[0]); });
  check_op("square", {x}, [](const auto& v) { return square(v[0]); });
  check_op("abs", {x}, [](const auto& v) { return detr::abs(v[0]); });
  check_op("clamp", {x}, [](const auto& v) { return clamp(v[0], -1.0f, 1.0f); });
  check_op("inverse_sigmoid", {unit}, [](const auto& v) { return inverse_sigmoid(v[0]); });
  check_op("scalars", {x}, [](const auto& v) { return (v[0] * 2.5f + 1.0f) / 4.0f - 3.0f; });
}

TEST_CASE("cuda ops: broadcasting binaries and their reduced gradients", "[cuda]") {
  auto a = randf({2, 3, 4}, 5), b = randf({3, 1}, 6, 0.5f, 2.0f), c = randf({4}, 7, 0.5f, 2.0f);
  check_op("add", {a, b}, [](const auto& v) { return v[0] + v[1]; });
  check_op("sub", {a, c}, [](const auto& v) { return v[0] - v[1]; });
  check_op("mul", {a, b}, [](const auto& v) { return v[0] * v[1]; });
  check_op("div", {a, c}, [](const auto& v) { return v[0] / v[1]; });
  check_op("div (broadcast numerator)", {c, a}, [](const auto& v) { return v[0] / v[1]; }, 1e-4, 1e-4);
  auto big = randf({64, 300}, 8), row = randf({300}, 9);
  check_op("add (bias-like, large)", {big, row}, [](const auto& v) { return v[0] + v[1]; }, 1e-4, 1e-4);
}

TEST_CASE("cuda ops: sum and mean", "[cuda]") {
  auto x = randf({3, 4, 5}, 10), big = randf({2, 50000}, 11);
  check_op("sum dims", {x}, [](const auto& v) { return sum(v[0], {0, 2}); });
  check_op("sum keepdim", {x}, [](const auto& v) { return sum(v[0], 1, true); });
  check_op("sum all", {x}, [](const auto& v) { return sum(v[0]); });
  check_op("mean dims", {x}, [](const auto& v) { return mean(v[0], {1}); });
  check_op("mean all", {x}, [](const auto& v) { return mean(v[0]); });
  check_op("sum large", {big}, [](const auto& v) { return sum(v[0], 1); }, 1e-5, 1e-2);
}

TEST_CASE("cuda ops: matmul, matmul_nt, linear (+ relu, + dropout)", "[cuda]") {
  auto a = randf({2, 5, 7}, 12), b = randf({7, 3}, 13), bb = randf({2, 7, 3}, 14), bt = randf({2, 3, 7}, 15);
  check_op("matmul shared", {a, b}, [](const auto& v) { return matmul(v[0], v[1]); }, 1e-4, 1e-4);
  check_op("matmul batched", {a, bb}, [](const auto& v) { return matmul(v[0], v[1]); }, 1e-4, 1e-4);
  check_op("matmul_nt batched", {a, bt}, [](const auto& v) { return matmul_nt(v[0], v[1]); }, 1e-4, 1e-4);
  auto x = randf({4, 6, 32}, 16), w = randf({48, 32}, 17, -0.3f, 0.3f), bias = randf({48}, 18);
  check_op("linear", {x, w, bias}, [](const auto& v) { return linear(v[0], v[1], v[2]); }, 1e-4, 1e-4);
  check_op("linear no bias", {x, w}, [](const auto& v) { return linear(v[0], v[1]); }, 1e-4, 1e-4);
  check_op("linear_relu", {x, w, bias}, [](const auto& v) { return linear_relu(v[0], v[1], v[2]); }, 1e-4, 1e-4);
  check_op("linear_relu_dropout", {x, w, bias}, [](const auto& v) {
    Rng rng(3);  // the same draw on both devices: the same mask
    return linear_relu_dropout(v[0], v[1], v[2], 0.25, true, rng);
  }, 1e-4, 1e-4);
}

TEST_CASE("cuda ops: softmax, log_softmax, layer_norm", "[cuda]") {
  auto x = randf({3, 4, 65}, 20, -5, 5);
  for (int j = 0; j < 65; ++j) x.data()[65 + j] = -INFINITY;  // a fully masked row
  check_op("softmax", {x}, [](const auto& v) { return softmax(v[0]); });
  auto xf = randf({3, 4, 65}, 21, -5, 5), w = randf({65}, 22, 0.5f, 1.5f), b = randf({65}, 23);
  check_op("log_softmax", {xf}, [](const auto& v) { return log_softmax(v[0]); });
  check_op("layer_norm", {xf, w, b}, [](const auto& v) { return layer_norm(v[0], v[1], v[2]); }, 1e-4, 1e-4);
}

TEST_CASE("cuda ops: layout ops", "[cuda]") {
  auto x = randf({2, 3, 4, 5}, 40), y = randf({2, 2, 4, 5}, 41), z = randf({3, 1, 5}, 42);
  check_op("reshape", {x}, [](const auto& v) { return reshape(v[0], {6, -1}) * 2.0f; });
  check_op("permute", {x}, [](const auto& v) { return permute(v[0], {3, 0, 2, 1}); });
  check_op("transpose", {x}, [](const auto& v) { return transpose(v[0], 1, 3); });
  check_op("concat", {x, y}, [](const auto& v) { return concat({v[0], v[1]}, 1); });
  check_op("slice (step)", {x}, [](const auto& v) { return slice(v[0], 2, 1, 4, 2); });
  check_op("slice (view)", {x}, [](const auto& v) { return slice(v[0], 0, 1, 2); });
  check_op("split", {x}, [](const auto& v) {
    auto parts = split(v[0], {1, 2}, 1);
    return parts[0] * 2.0f + sum(parts[1], 1, true);
  });
  check_op("expand", {z}, [](const auto& v) { return expand(v[0], {2, 3, 4, 5}); });
  check_op("repeat", {z}, [](const auto& v) { return repeat(v[0], {2, 1, 3, 2}); });
  check_op("unsqueeze / squeeze", {z}, [](const auto& v) { return squeeze(unsqueeze(squeeze(v[0], 1), 0)); });
}

TEST_CASE("cuda ops: dropout draws the CPU's mask", "[cuda]") {
  auto x = randf({64, 33}, 43);
  check_op("dropout", {x}, [](const auto& v) {
    Rng rng(11);
    return dropout(v[0], 0.3, true, rng);
  }, 0, 0);
}

TEST_CASE("cuda ops: multi-head attention with masks, padding and dropout", "[cuda]") {
  const int64_t B = 2, Lq = 5, Lk = 9, D = 12, H = 3;
  auto q = randf({B, Lq, D}, 50), k = randf({B, Lk, D}, 51), v = randf({B, Lk, D}, 52);
  auto pad = Tensor<uint8_t>::zeros({B, Lk});
  pad.data()[Lk + 7] = pad.data()[Lk + 8] = 1;
  auto blocked = Tensor<uint8_t>::zeros({Lq, Lk});
  blocked.data()[3] = 1;
  auto additive = randf({B * H, Lq, Lk}, 53, -1, 1);
  auto run = [&](bool masks, double p) {
    return [&, masks, p](const auto& x) {
      using Dev = typename std::decay_t<decltype(x[0])>::Device;
      AttentionMask<float, Dev> m;
      Tensor<uint8_t, Dev> padding;
      if (masks) {
        m.blocked = to_device<Dev>(blocked);
        m.additive = to_device<Dev>(additive);
        padding = to_device<Dev>(pad);
      }
      Rng rng(21);
      return multi_head_attention(x[0], x[1], x[2], int(H), m, padding, p, p > 0, &rng);
    };
  };
  check_op("attention", {q, k, v}, run(false, 0.0), 1e-4, 1e-5);
  check_op("attention, masks and padding", {q, k, v}, run(true, 0.0), 1e-4, 1e-5);
  check_op("attention, masks and dropout", {q, k, v}, run(true, 0.2), 1e-4, 1e-5);
}

TEST_CASE("cuda ops: a small MLP's loss and gradients agree on both devices", "[cuda]") {
  auto x = randf({16, 8}, 30), w1 = randf({32, 8}, 31, -0.3f, 0.3f), b1 = randf({32}, 32, -0.1f, 0.1f),
       gamma = randf({32}, 33, 0.5f, 1.5f), beta = randf({32}, 34, -0.1f, 0.1f), w2 = randf({1, 32}, 35, -0.3f, 0.3f),
       t = randf({16, 1}, 36);
  check_op("mlp loss", {x, w1, b1, gamma, beta, w2, t}, [](const auto& v) {
    auto h = layer_norm(linear_relu(v[0], v[1], v[2]), v[3], v[4]);
    return mean(square(linear(h, v[5]) - v[6]));
  }, 1e-4, 1e-5);
}
