// Multi-scale deformable attention op: gradcheck in double (samples inside, on the borders and
// outside the maps), parity of the output and all three gradients with the grid_sample reference
// (tests/reference/make_ms_deform_attn.py), bit-identical backward for any thread count, and
// the shape errors.

#include <cstring>

#include "detr/ops/elementwise.hpp"
#include "detr/ops/ms_deform_attn.hpp"
#include "detr/ops/shape.hpp"
#include "parity.hpp"

using namespace detr;
using detr::test::reference;
using detr::test::same_bits;

namespace {

Tensor<int64_t> starts_of(const Tensor<int64_t>& shapes) {
  auto s = Tensor<int64_t>::empty({shapes.dim(0)});
  int64_t acc = 0;
  for (int64_t l = 0; l < shapes.dim(0); ++l) {
    s.data()[l] = acc;
    acc += shapes.data()[2 * l] * shapes.data()[2 * l + 1];
  }
  return s;
}

}  // namespace

TEST_CASE("ms_deform_attn gradcheck: inside, border and outside samples", "[ms_deform_attn][gradcheck]") {
  const auto shapes = Tensor<int64_t>::from({2, 2}, {3, 4, 2, 3});  // S = 12 + 6
  const auto starts = starts_of(shapes);
  const int64_t B = 2, S = 18, H = 2, D = 3, Q = 3, L = 2, P = 3;
  auto loc = detr::test::rand_uniform({B, Q, H, L, P, 2}, 11, -0.1, 1.1);
  // Pin some samples: loc 0 and 1 put the pixel coordinate at -0.5 and W - 0.5 (half the
  // neighbours outside); -0.4 and 1.4 lie wholly outside; one sample straddles a corner.
  double* pl = loc.data();
  pl[0] = 0.0, pl[1] = 0.37;
  pl[2] = 1.0, pl[3] = 0.61;
  pl[4] = 0.29, pl[5] = 1.0;
  pl[6] = -0.4, pl[7] = 0.5;
  pl[8] = 0.5, pl[9] = 1.4;
  pl[10] = 0.02, pl[11] = 0.97;
  REQUIRE_GRADCHECK([&](const std::vector<Var<double>>& x) { return ms_deform_attn(x[0], shapes, starts, x[1], x[2]); },
                    {detr::test::randn({B, S, H, D}, 1), loc, detr::test::rand_uniform({B, Q, H, L, P}, 3, 0.1, 1.0)});
}

TEST_CASE("ms_deform_attn gradcheck: head size with a vectorised path", "[ms_deform_attn][gradcheck]") {
  const auto shapes = Tensor<int64_t>::from({1, 2}, {4, 5});
  const auto starts = starts_of(shapes);
  REQUIRE_GRADCHECK([&](const std::vector<Var<double>>& x) { return ms_deform_attn(x[0], shapes, starts, x[1], x[2]); },
                    {detr::test::randn({1, 20, 1, 8}, 4), detr::test::rand_uniform({1, 4, 1, 1, 2, 2}, 5, -0.2, 1.2),
                     detr::test::rand_uniform({1, 4, 1, 1, 2}, 6, -1.0, 1.0)});
}

TEST_CASE("ms_deform_attn: a sample wholly outside adds nothing and gets zero gradient", "[ms_deform_attn]") {
  const auto shapes = Tensor<int64_t>::from({1, 2}, {2, 2});
  const auto starts = starts_of(shapes);
  Var<double> v(detr::test::randn({1, 4, 1, 2}, 1), true);
  Var<double> loc(Tensor<double>::from({1, 1, 1, 1, 1, 2}, {1.3, 0.5}), true);
  Var<double> a(Tensor<double>::from({1, 1, 1, 1, 1}, {0.7}), true);
  auto y = ms_deform_attn(v, shapes, starts, loc, a);
  REQUIRE(y.value().to_vector() == std::vector<double>{0.0, 0.0});
  y.backward(Tensor<double>::ones(y.shape()));
  REQUIRE(loc.grad().to_vector() == std::vector<double>{0.0, 0.0});
  REQUIRE(a.grad().item() == 0.0);
  REQUIRE(v.grad().arr().abs().maxCoeff() == 0.0);
}

TEST_CASE("ms_deform_attn: the centre of a pixel returns its value", "[ms_deform_attn]") {
  const auto shapes = Tensor<int64_t>::from({1, 2}, {2, 3});
  const auto starts = starts_of(shapes);
  auto v = detr::test::randn({1, 6, 1, 2}, 9);
  // Pixel (y 1, x 2) has centre ((2 + 0.5) / 3, (1 + 0.5) / 2).
  Var<double> loc(Tensor<double>::from({1, 1, 1, 1, 1, 2}, {2.5 / 3, 0.75}));
  Var<double> a(Tensor<double>::from({1, 1, 1, 1, 1}, {2.0}));
  auto y = ms_deform_attn(Var<double>(v), shapes, starts, loc, a);
  REQUIRE(y.value().at({0, 0, 0}) == Approx(2 * v.at({0, 5, 0, 0})));
  REQUIRE(y.value().at({0, 0, 1}) == Approx(2 * v.at({0, 5, 0, 1})));
}

namespace {
void check_op_parity(const std::string& c) {
  const auto& ref = reference("ms_deform_attn");
  const std::string p = "op_" + c + ".";
  Var<float> value(ref.get<float>(p + "value"), true), loc(ref.get<float>(p + "sampling_locations"), true),
      attn(ref.get<float>(p + "attention_weights"), true);
  auto y = ms_deform_attn(value, ref.get<int64_t>(p + "spatial_shapes"), ref.get<int64_t>(p + "level_start_index"), loc, attn);
  REQUIRE_ALLCLOSE(y.value(), ref.get<float>(p + "out"), 1e-4, 1e-5);
  y.backward(ref.get<float>(p + "grad_out"));
  REQUIRE_ALLCLOSE(value.grad(), ref.get<float>(p + "grad.value"), 1e-4, 1e-5);
  REQUIRE_ALLCLOSE(attn.grad(), ref.get<float>(p + "grad.attention_weights"), 1e-4, 1e-5);
  // The location gradient is scaled by W and H: float rounding of the pixel coordinate differs
  // from grid_sample's ((2 loc - 1 + 1) W - 1) / 2 by an ulp, times up to W.
  REQUIRE_ALLCLOSE(loc.grad(), ref.get<float>(p + "grad.sampling_locations"), 1e-4, 1e-4);
}
}  // namespace

TEST_CASE("ms_deform_attn parity with grid_sample: encoder shapes", "[ms_deform_attn][parity]") { check_op_parity("encoder"); }
TEST_CASE("ms_deform_attn parity with grid_sample: decoder shapes", "[ms_deform_attn][parity]") { check_op_parity("decoder"); }

TEST_CASE("ms_deform_attn backward is bit-identical across runs and thread counts", "[ms_deform_attn]") {
  const auto shapes = Tensor<int64_t>::from({3, 2}, {16, 16, 8, 8, 4, 4});
  const auto starts = starts_of(shapes);
  const int64_t B = 2, S = 336, H = 4, D = 32, Q = 200, L = 3, P = 4;
  Rng rng(3);
  auto v = rng.normal_tensor<float>({B, S, H, D});
  auto loc = rng.uniform_tensor<float>({B, Q, H, L, P, 2}, -0.1, 1.1);
  auto a = rng.uniform_tensor<float>({B, Q, H, L, P}, 0, 1);
  auto g = rng.normal_tensor<float>({B, Q, H * D});
  auto grads = [&](int threads) {
    const int prev = detr::num_threads();
    detr::set_num_threads(threads);
    Var<float> vv(v, true), ll(loc, true), aa(a, true);
    ms_deform_attn(vv, shapes, starts, ll, aa).backward(g);
    detr::set_num_threads(prev);
    return std::vector<Tensor<float>>{vv.grad(), ll.grad(), aa.grad()};
  };
  auto first = grads(2), second = grads(2), single = grads(1), three = grads(3);
  for (int i = 0; i < 3; ++i) {
    const size_t bytes = sizeof(float) * first[i].numel();
    REQUIRE(std::memcmp(first[i].data(), second[i].data(), bytes) == 0);
    REQUIRE(std::memcmp(first[i].data(), single[i].data(), bytes) == 0);
    REQUIRE(std::memcmp(first[i].data(), three[i].data(), bytes) == 0);
  }
}

// ms_deform_attn_from_offsets: locations = reference + offsets / (W_l, H_l), fused.

TEST_CASE("ms_deform_attn_from_offsets gradcheck: reference points, offsets, value and weights",
          "[ms_deform_attn][gradcheck]") {
  const auto shapes = Tensor<int64_t>::from({2, 2}, {3, 4, 2, 3});
  const auto starts = starts_of(shapes);
  const int64_t B = 2, S = 18, H = 2, D = 3, Q = 3, L = 2, P = 3;
  // Offsets of up to +-1.5 pixels around references near the borders: some samples straddle an
  // edge, some fall wholly outside.
  REQUIRE_GRADCHECK(
      [&](const std::vector<Var<double>>& x) { return ms_deform_attn_from_offsets(x[0], shapes, starts, x[1], x[2], x[3]); },
      {detr::test::randn({B, S, H, D}, 1), detr::test::rand_uniform({B, Q, L, 2}, 2, -0.05, 1.05),
       detr::test::rand_uniform({B, Q, H, L, P, 2}, 3, -1.5, 1.5), detr::test::rand_uniform({B, Q, H, L, P}, 4, 0.1, 1.0)});
}

TEST_CASE("ms_deform_attn_from_offsets equals ms_deform_attn at reference + offsets / (W, H)", "[ms_deform_attn]") {
  const auto shapes = Tensor<int64_t>::from({3, 2}, {16, 12, 8, 6, 4, 3});
  const auto starts = starts_of(shapes);
  const int64_t B = 2, S = 16 * 12 + 8 * 6 + 4 * 3, H = 4, D = 32, Q = 50, L = 3, P = 4;
  Rng rng(5);
  auto v = rng.normal_tensor<float>({B, S, H, D});
  auto ref = rng.uniform_tensor<float>({B, Q, L, 2}, 0, 1);
  auto off = rng.normal_tensor<float>({B, Q, H, L, P, 2});
  auto a = rng.uniform_tensor<float>({B, Q, H, L, P}, 0, 1);
  auto g = rng.normal_tensor<float>({B, Q, H * D});
  auto normalizer = Tensor<float>::empty({L, 1, 2});  // (W_l, H_l), as MSDeformAttn builds it
  for (int64_t l = 0; l < L; ++l) {
    normalizer.data()[2 * l] = float(shapes.data()[2 * l + 1]);
    normalizer.data()[2 * l + 1] = float(shapes.data()[2 * l]);
  }
  Var<float> v1(v, true), r1(ref, true), o1(off, true), a1(a, true);
  Var<float> v2(v, true), r2(ref, true), o2(off, true), a2(a, true);
  auto fused = ms_deform_attn_from_offsets(v1, shapes, starts, r1, o1, a1);
  auto composed = ms_deform_attn(v2, shapes, starts, reshape(r2, {B, Q, 1, L, 1, 2}) + o2 / constant(normalizer), a2);
  fused.backward(g);
  composed.backward(g);
  REQUIRE(same_bits(fused.value(), composed.value()));
  REQUIRE(same_bits(v1.grad(), v2.grad()));
  REQUIRE(same_bits(o1.grad(), o2.grad()));
  REQUIRE(same_bits(a1.grad(), a2.grad()));
  REQUIRE_ALLCLOSE(r1.grad(), r2.grad(), 1e-5, 1e-5);  // a sum over heads and points, in another order
}

TEST_CASE("ms_deform_attn_from_offsets: a constant reference gets no gradient; bits for any thread count",
          "[ms_deform_attn]") {
  const auto shapes = Tensor<int64_t>::from({2, 2}, {16, 16, 8, 8});
  const auto starts = starts_of(shapes);
  const int64_t B = 2, S = 320, H = 4, D = 32, Q = 120, L = 2, P = 4;
  Rng rng(6);
  auto v = rng.normal_tensor<float>({B, S, H, D});
  auto ref = rng.uniform_tensor<float>({B, Q, L, 2}, 0, 1);
  auto off = rng.normal_tensor<float>({B, Q, H, L, P, 2}, 0, 4);
  auto a = rng.uniform_tensor<float>({B, Q, H, L, P}, 0, 1);
  auto g = rng.normal_tensor<float>({B, Q, H * D});
  auto grads = [&](int threads, bool reference_grad) {
    const int prev = detr::num_threads();
    detr::set_num_threads(threads);
    Var<float> vv(v, true), rr(ref, reference_grad), oo(off, true), aa(a, true);
    ms_deform_attn_from_offsets(vv, shapes, starts, rr, oo, aa).backward(g);
    detr::set_num_threads(prev);
    return std::vector<Tensor<float>>{vv.grad(), rr.grad(), oo.grad(), aa.grad()};
  };
  const auto constant_ref = grads(2, false);
  REQUIRE_FALSE(constant_ref[1].defined());
  auto first = grads(2, true), single = grads(1, true), three = grads(3, true);
  for (int i = 0; i < 4; ++i) {
    const size_t bytes = sizeof(float) * first[i].numel();
    REQUIRE(std::memcmp(first[i].data(), single[i].data(), bytes) == 0);
    REQUIRE(std::memcmp(first[i].data(), three[i].data(), bytes) == 0);
    if (i != 1) REQUIRE(std::memcmp(first[i].data(), constant_ref[i].data(), bytes) == 0);
  }
}

TEST_CASE("ms_deform_attn shape errors name the tensor and the expected shape", "[ms_deform_attn][errors]") {
  const auto shapes = Tensor<int64_t>::from({2, 2}, {3, 4, 2, 3});
  const auto starts = starts_of(shapes);
  Var<float> v(Tensor<float>::zeros({1, 18, 2, 4})), loc(Tensor<float>::zeros({1, 5, 2, 2, 3, 2})),
      a(Tensor<float>::zeros({1, 5, 2, 2, 3}));
  REQUIRE_NOTHROW(ms_deform_attn(v, shapes, starts, loc, a));
  REQUIRE_THROWS_WITH(ms_deform_attn(Var<float>(Tensor<float>::zeros({1, 17, 2, 4})), shapes, starts, loc, a),
                      Catch::Contains("hold 18 positions") && Catch::Contains("S = 17"));
  REQUIRE_THROWS_WITH(ms_deform_attn(Var<float>(Tensor<float>::zeros({18, 2, 4})), shapes, starts, loc, a),
                      Catch::Contains("value must be [B, S, H, D]"));
  REQUIRE_THROWS_WITH(ms_deform_attn(v, Tensor<int64_t>::from({2}, {3, 4}), starts, loc, a),
                      Catch::Contains("spatial_shapes must be [L, 2]"));
  REQUIRE_THROWS_WITH(ms_deform_attn(v, shapes, Tensor<int64_t>::from({2}, {0, 13}), loc, a),
                      Catch::Contains("level_start_index[1] is 13, expected 12"));
  REQUIRE_THROWS_WITH(ms_deform_attn(v, shapes, Tensor<int64_t>::from({1}, {0}), loc, a),
                      Catch::Contains("level_start_index must be [2]"));
  REQUIRE_THROWS_WITH(ms_deform_attn(v, shapes, starts, Var<float>(Tensor<float>::zeros({1, 5, 2, 3, 3, 2})), a),
                      Catch::Contains("sampling_locations must be [B, Q, H, L, P, 2] = [1, Q, 2, 2, P, 2]"));
  REQUIRE_THROWS_WITH(ms_deform_attn(v, shapes, starts, loc, Var<float>(Tensor<float>::zeros({1, 5, 2, 2, 4}))),
                      Catch::Contains("attention_weights must be [B, Q, H, L, P] = [1, 5, 2, 2, 3]"));
  REQUIRE_THROWS_WITH(ms_deform_attn(v, Tensor<int64_t>::from({2, 2}, {3, 4, 0, 3}), starts, loc, a),
                      Catch::Contains("level 1 is 0 x 3"));
  Var<float> ref(Tensor<float>::zeros({1, 5, 2, 2}));
  REQUIRE_NOTHROW(ms_deform_attn_from_offsets(v, shapes, starts, ref, loc, a));
  REQUIRE_THROWS_WITH(ms_deform_attn_from_offsets(v, shapes, starts, Var<float>(Tensor<float>::zeros({1, 5, 2, 4})), loc, a),
                      Catch::Contains("reference_points must be [B, Q, L, 2] = [1, 5, 2, 2], got [1, 5, 2, 4]"));
  REQUIRE_THROWS_WITH(ms_deform_attn_from_offsets(v, shapes, starts, ref, Var<float>(Tensor<float>::zeros({1, 5, 2, 3, 3, 2})), a),
                      Catch::Contains("sampling_offsets must be [B, Q, H, L, P, 2]"));
}

#include "detr/ops/ms_deform_attn_math.hpp"

TEST_CASE("bilinear_sample (shared CPU / CUDA body): pixel centres, corners, outside", "[ms_deform_attn]") {
  internal::BilinearSample<double> s;
  // The centre of pixel (y=1, x=2) of a 4 x 5 map: all weight on that pixel.
  REQUIRE(internal::bilinear_sample(2.5 / 5.0, 1.5 / 4.0, 4, 5, s));
  REQUIRE(s.offset[0] == 1 * 5 + 2);
  REQUIRE(s.weight[0] == Approx(1.0));
  REQUIRE(s.weight[1] + s.weight[2] + s.weight[3] == Approx(0.0).margin(1e-12));
  // Half way between four pixels: equal quarters.
  REQUIRE(internal::bilinear_sample(2.0 / 5.0, 1.0 / 4.0, 4, 5, s));
  for (double w : s.weight) REQUIRE(w == Approx(0.25));
  // Top-left corner of the map: only the (0, 0) neighbour lies inside.
  REQUIRE(internal::bilinear_sample(0.0, 0.0, 4, 5, s));
  REQUIRE(s.offset[0] == -1);
  REQUIRE(s.offset[3] == 0);
  REQUIRE(s.weight[3] == Approx(0.25));
  // Wholly outside, and NaN: no sample.
  REQUIRE_FALSE(internal::bilinear_sample(1.5, 0.5, 4, 5, s));
  REQUIRE_FALSE(internal::bilinear_sample(std::nan(""), 0.5, 4, 5, s));
}
