#include "detr/io/safetensors.hpp"
#include "detr/ops/conv.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;
using V = std::vector<Var<double>>;

namespace {

// Direct 7-loop convolution (the definition), for forward values.
Tensor<double> naive_conv(const Tensor<double>& x, const Tensor<double>& w, const Tensor<double>* b,
                          Size2 s, Size2 p, Size2 d, int64_t G) {
  int64_t B = x.dim(0), H = x.dim(2), W = x.dim(3);
  int64_t Cout = w.dim(0), CinG = w.dim(1), KH = w.dim(2), KW = w.dim(3);
  int64_t OH = (H + 2 * p.h - d.h * (KH - 1) - 1) / s.h + 1, OW = (W + 2 * p.w - d.w * (KW - 1) - 1) / s.w + 1;
  auto y = Tensor<double>::zeros({B, Cout, OH, OW});
  for (int64_t n = 0; n < B; ++n)
    for (int64_t co = 0; co < Cout; ++co)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double acc = b ? b->at({co}) : 0.0;
          int64_t g = co / (Cout / G);
          for (int64_t ci = 0; ci < CinG; ++ci)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                int64_t ih = oh * s.h - p.h + kh * d.h, iw = ow * s.w - p.w + kw * d.w;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc += x.at({n, g * CinG + ci, ih, iw}) * w.at({co, ci, kh, kw});
              }
          y.at({n, co, oh, ow}) = acc;
        }
  return y;
}

struct Case {
  Shape x, w;
  bool bias;
  Size2 s, p, d;
  int64_t groups;
};

const std::vector<Case> kCases = {
    {{2, 3, 7, 6}, {4, 3, 3, 3}, true, 2, 1, 1, 1},
    {{1, 2, 8, 7}, {3, 2, 3, 3}, false, 1, 2, 2, 1},        // dilation 2
    {{2, 5, 4, 3}, {6, 5, 1, 1}, true, 1, 0, 1, 1},         // 1x1: no im2col
    {{2, 4, 5, 5}, {3, 4, 1, 1}, false, 2, 0, 1, 1},        // 1x1 stride 2 (downsample)
    {{2, 4, 6, 5}, {4, 2, 3, 2}, true, {2, 1}, {1, 0}, 1, 2},  // groups, per-axis sizes
    {{1, 1, 3, 3}, {2, 1, 3, 3}, true, 1, 0, 1, 1},         // kernel exactly the input size
    {{1, 2, 4, 5}, {2, 2, 2, 2}, true, 3, 2, 1, 1},         // padding on every side, stride > kernel
    {{2, 3, 5, 4}, {3, 1, 3, 3}, false, 1, 1, 1, 3},        // depthwise
};

}  // namespace

TEST_CASE("conv2d forward matches the direct definition", "[conv]") {
  uint64_t seed = 1;
  for (const Case& c : kCases) {
    auto x = randn(c.x, seed++), w = randn(c.w, seed++), b = randn({c.w[0]}, seed++);
    auto y = conv2d(Var<double>(x), Var<double>(w), c.bias ? Var<double>(b) : Var<double>(), c.s, c.p,
                    c.d, c.groups).value();
    REQUIRE_ALLCLOSE(y, naive_conv(x, w, c.bias ? &b : nullptr, c.s, c.p, c.d, c.groups), 1e-12, 1e-12);
  }
}

TEST_CASE("conv2d gradcheck (input, weight, bias)", "[conv][gradcheck]") {
  uint64_t seed = 100;
  for (const Case& c : kCases) {
    INFO("x " << c.x << " w " << c.w << " stride " << c.s << " padding " << c.p << " dilation "
              << c.d << " groups " << c.groups);
    auto x = randn(c.x, seed++), w = randn(c.w, seed++), b = randn({c.w[0]}, seed++);
    if (c.bias)
      REQUIRE_GRADCHECK([&](const V& v) { return conv2d(v[0], v[1], v[2], c.s, c.p, c.d, c.groups); },
                        {x, w, b});
    else
      REQUIRE_GRADCHECK([&](const V& v) { return conv2d(v[0], v[1], Var<double>(), c.s, c.p, c.d, c.groups); },
                        {x, w});
  }
}

TEST_CASE("conv2d on images large enough to be split into bands of output rows", "[conv]") {
  // 144 column rows x 140 columns per output row: bands of 26 rows, the last one shorter.
  // The backward is checked through the adjoint identities of a bilinear map:
  // <conv(x, w), g> = <x, dx> = <w, dw>.
  for (int64_t B : {1, 2}) {
    auto x = randn({B, 16, 300, 280}, 11), w = randn({16, 16, 3, 3}, 12);
    Var<double> xv(x, true), wv(w, true);
    auto y = conv2d(xv, wv, Var<double>(), 2, 2, 2);
    REQUIRE_ALLCLOSE(y.value(), naive_conv(x, w, nullptr, 2, 2, 2, 1), 1e-10, 1e-10);
    auto g = randn(y.shape(), 13);
    y.backward(g);
    const double yg = (y.value().arr() * g.arr()).sum();
    REQUIRE((x.arr() * xv.grad().arr()).sum() == Approx(yg).epsilon(1e-10));
    REQUIRE((w.arr() * wv.grad().arr()).sum() == Approx(yg).epsilon(1e-10));
  }
}

TEST_CASE("conv2d: one image per thread gives the per-image results, deterministically", "[conv]") {
  // Large enough that images are spread over threads; each image must equal a batch of one and
  // the weight gradient the in-order sum of the per-image gradients.
  Rng rng(7);
  auto x = rng.normal_tensor<float>({4, 8, 12, 11}), w = rng.normal_tensor<float>({16, 8, 3, 3});
  auto b = rng.normal_tensor<float>({16}), gout = rng.normal_tensor<float>({4, 16, 6, 6});
  auto run = [&](const Tensor<float>& xs, const Tensor<float>& gs) {
    Var<float> xv(xs.clone(), true), wv(w.clone(), true), bv(b.clone(), true);
    auto y = conv2d(xv, wv, bv, 2, 1);
    y.backward(gs);
    return std::array<Tensor<float>, 4>{y.value(), xv.grad(), wv.grad(), bv.grad()};
  };
  auto all = run(x, gout), again = run(x, gout);
  for (int i = 0; i < 4; ++i)
    REQUIRE(std::equal(all[i].data(), all[i].data() + all[i].numel(), again[i].data()));
  auto gw = Tensor<float>::zeros(w.shape());
  for (int64_t n = 0; n < 4; ++n) {
    auto one = run(x.slice0(n, n + 1), gout.slice0(n, n + 1));
    REQUIRE_ALLCLOSE(one[0], all[0].slice0(n, n + 1), 1e-5, 1e-5);
    REQUIRE_ALLCLOSE(one[1], all[1].slice0(n, n + 1), 1e-5, 1e-5);
    gw.arr() += one[2].arr();
  }
  REQUIRE_ALLCLOSE(gw, all[2], 1e-4, 1e-4);
}

TEST_CASE("conv2d matches torch (values and gradients)", "[conv][parity]") {
  auto f = io::SafetensorsFile::load(std::string(DETR_TEST_DATA_DIR) + "/vision_ops.safetensors");
  struct P {
    const char* name;
    Size2 s, p, d;
    int64_t groups;
  };
  for (const P& c : {P{"conv_s2p1", 2, 1, 1, 1}, P{"conv_dil2", 1, 2, 2, 1}, P{"conv_1x1", 1, 0, 1, 1},
                     P{"conv_1x1s2", 2, 0, 1, 1}, P{"conv_groups", {2, 1}, {1, 0}, 1, 2},
                     P{"conv_stem", 2, 3, 1, 1}}) {
    std::string n = c.name;
    INFO(n);
    bool has_bias = f.contains(n + ".b");
    Var<float> x(f.get<float>(n + ".x"), true), w(f.get<float>(n + ".w"), true);
    Var<float> b = has_bias ? Var<float>(f.get<float>(n + ".b"), true) : Var<float>();
    auto y = conv2d(x, w, b, c.s, c.p, c.d, c.groups);
    y.backward(f.get<float>(n + ".gout"));
    REQUIRE_ALLCLOSE(y.value(), f.get<float>(n + ".out"), 1e-4, 1e-5);
    REQUIRE_ALLCLOSE(x.grad(), f.get<float>(n + ".gx"), 1e-4, 1e-5);
    REQUIRE_ALLCLOSE(w.grad(), f.get<float>(n + ".gw"), 1e-4, 1e-5);
    if (has_bias) REQUIRE_ALLCLOSE(b.grad(), f.get<float>(n + ".gb"), 1e-4, 1e-5);
  }
}

TEST_CASE("conv2d errors name the shapes", "[conv]") {
  Var<float> x(Tensor<float>::zeros({1, 3, 5, 5})), w(Tensor<float>::zeros({4, 2, 3, 3}));
  REQUIRE_THROWS_WITH(conv2d(x, w), Catch::Contains("has 3 channels but weight [4, 2, 3, 3]"));
  REQUIRE_THROWS_WITH(conv2d(x, Var<float>(Tensor<float>::zeros({3, 1, 3, 3})), Var<float>(), 1, 0, 1, 2),
                      Catch::Contains("not divisible by groups=2"));
  Var<float> w3(Tensor<float>::zeros({4, 3, 3, 3}));
  REQUIRE_THROWS_WITH(conv2d(Var<float>(Tensor<float>::zeros({1, 3, 2, 5})), w3),
                      Catch::Contains("input [1, 3, 2, 5] padded by (0, 0) is smaller than the kernel"));
  REQUIRE_THROWS_WITH(conv2d(x, w3, Var<float>(Tensor<float>::zeros({3}))), Catch::Contains("bias [3]"));
  REQUIRE_THROWS_WITH(conv2d(Var<float>(Tensor<float>::zeros({3, 5, 5})), w3),
                      Catch::Contains("input must be [B, Cin, H, W], got [3, 5, 5]"));
  REQUIRE_THROWS_WITH(conv2d(x, w3, Var<float>(), 0), Catch::Contains("stride must be positive"));
  REQUIRE_NOTHROW(conv2d(Var<float>(Tensor<float>::zeros({1, 3, 2, 5})), w3, Var<float>(), 1, 1));
}
