// internal::gemm (our packed AVX-512 kernel for float, Eigen otherwise) and PackedB against a
// double-precision loop: every transpose combination, leading dimensions wider than the matrix,
// beta 0 / 1 / other (beta 0 must ignore NaN already in C), edge tiles, depths across several
// packed panels, and calls from inside a parallel region. Also the host memory cache.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "detr/core/tensor.hpp"
#include "detr/ops/gemm.hpp"

namespace {

struct Case {
  int64_t M, N, K;
  bool ta, tb;
  int64_t pad_a, pad_b, pad_c;  // extra elements per row beyond the matrix
  float beta;
};

struct Operands {
  std::vector<float> A, B, C, expected;
  int64_t lda, ldb, ldc;
};

Operands make(const Case& c, std::mt19937& gen) {
  std::uniform_real_distribution<float> u(-1, 1);
  Operands o;
  o.lda = (c.ta ? c.M : c.K) + c.pad_a;
  o.ldb = (c.tb ? c.K : c.N) + c.pad_b;
  o.ldc = c.N + c.pad_c;
  o.A.resize(size_t((c.ta ? c.K : c.M) * o.lda));
  o.B.resize(size_t((c.tb ? c.N : c.K) * o.ldb));
  o.C.resize(size_t(c.M * o.ldc));
  for (auto& x : o.A) x = u(gen);
  for (auto& x : o.B) x = u(gen);
  for (auto& x : o.C) x = u(gen);
  o.expected = o.C;
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < c.K; ++k)
        s += double(c.ta ? o.A[k * o.lda + i] : o.A[i * o.lda + k]) *
             double(c.tb ? o.B[j * o.ldb + k] : o.B[k * o.ldb + j]);
      float& e = o.expected[size_t(i * o.ldc + j)];
      e = float(s + (c.beta == 0.f ? 0.0 : double(c.beta) * double(e)));
    }
  if (c.beta == 0.f)  // beta = 0 must not read C: poison the part it writes
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < c.N; ++j) o.C[size_t(i * o.ldc + j)] = std::numeric_limits<float>::quiet_NaN();
  return o;
}

// Max |C - expected| over the whole buffer, padding included (it must be untouched).
double max_error(const Operands& o) {
  double err = 0;
  for (size_t i = 0; i < o.C.size(); ++i) {
    double d = std::fabs(double(o.C[i]) - double(o.expected[i]));
    err = std::isnan(d) ? std::numeric_limits<double>::infinity() : std::max(err, d);
  }
  return err;
}

std::vector<Case> cases() {
  std::vector<Case> cs;
  std::mt19937 gen(7);
  const float betas[] = {0.f, 1.f, 0.5f};
  // Small and edge shapes: below / at / above the 12 x 32 register tile.
  for (int64_t M : {1, 11, 12, 13, 25})
    for (int64_t N : {1, 31, 32, 33, 70})
      for (int64_t K : {0, 1, 17})
        cs.push_back({M, N, K, bool(gen() % 2), bool(gen() % 2), int64_t(gen() % 3), int64_t(gen() % 3),
                      int64_t(gen() % 3), betas[gen() % 3]});
  // Every transpose pair at shapes across row blocks, column panels and packed depths.
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{200, 130, 600}, {397, 40, 1100}, {37, 300, 520},
                             {5, 4200, 3}, {850, 32, 48}, {60, 70, 4500}})
        for (float beta : betas) cs.push_back({M, N, K, ta, tb, 1, 2, 3, beta});
  return cs;
}

}  // namespace

TEST_CASE("gemm matches a double-precision loop", "[gemm]") {
  std::mt19937 gen(1);
  for (const Case& c : cases()) {
    Operands o = make(c, gen);
    detr::internal::gemm(c.ta, c.tb, c.M, c.N, c.K, o.A.data(), o.lda, o.B.data(), o.ldb, o.C.data(), o.ldc, c.beta);
    INFO("M " << c.M << " N " << c.N << " K " << c.K << " ta " << c.ta << " tb " << c.tb << " beta " << c.beta);
    CHECK(max_error(o) <= 1e-5 * std::sqrt(double(c.K) + 1) + 1e-6);
  }
}

TEST_CASE("gemm_bias adds a per-column bias to every row", "[gemm]") {
  std::mt19937 gen(4);
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{13, 45, 7}, {200, 130, 600}, {30, 4200, 20}, {5, 3, 0}})
    for (bool tb : {false, true}) {
      Case c{M, N, K, false, tb, 1, 0, 2, 0.f};
      Operands o = make(c, gen);
      std::vector<float> bias(static_cast<size_t>(N));
      for (auto& b : bias) b = u(gen);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) o.expected[size_t(i * o.ldc + j)] += bias[size_t(j)];
      detr::internal::gemm_bias(false, tb, M, N, K, o.A.data(), o.lda, o.B.data(), o.ldb, o.C.data(), o.ldc, bias.data());
      INFO("M " << M << " N " << N << " K " << K << " tb " << tb);
      CHECK(max_error(o) <= 1e-5 * std::sqrt(double(K) + 1) + 1e-6);
    }
}

TEST_CASE("gemm_bias with relu clamps the finished sum (edge tiles, several depth panels, NaN)", "[gemm]") {
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> u(-1, 1);
  // K 1100: three depth panels, the clamp must wait for the last; 45 / 4200 columns leave edge strips.
  for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{13, 45, 7}, {200, 130, 1100}, {30, 4200, 20}})
    for (bool tb : {false, true}) {
      Case c{M, N, K, false, tb, 1, 0, 2, 0.f};
      Operands o = make(c, gen);
      o.A[0] = std::numeric_limits<float>::quiet_NaN();  // row 0 is NaN everywhere, and stays NaN (torch's relu)
      std::vector<float> bias(static_cast<size_t>(N));
      for (auto& b : bias) b = u(gen);
      int64_t negative = 0;
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          float& e = o.expected[size_t(i * o.ldc + j)];
          e = i == 0 ? 0.f : std::max(e + bias[size_t(j)], 0.f);
          negative += e == 0.f;
        }
      REQUIRE(negative > M * N / 4);  // the clamp is exercised
      detr::internal::gemm_bias(false, tb, M, N, K, o.A.data(), o.lda, o.B.data(), o.ldb, o.C.data(), o.ldc,
                                bias.data(), true);
      INFO("M " << M << " N " << N << " K " << K << " tb " << tb);
      int64_t nan_row = 0;
      for (int64_t j = 0; j < N; ++j) nan_row += std::isnan(o.C[size_t(j)]);
      CHECK(nan_row == N);
      std::fill_n(o.C.begin(), N, 0.f);  // compared above
      CHECK(max_error(o) <= 1e-5 * std::sqrt(double(K) + 1) + 1e-6);
    }
}

TEST_CASE("gemm inside a parallel region runs serially and stays correct", "[gemm]") {
  std::mt19937 gen(2);
  std::vector<Case> cs;
  for (int i = 0; i < 8; ++i) cs.push_back({150 + 10 * i, 90, 300, i % 2 == 0, i % 4 < 2, 0, 1, 0, i % 3 ? 1.f : 0.f});
  std::vector<Operands> ops;
  for (auto& c : cs) ops.push_back(make(c, gen));
  detr::parallel_chunks(int64_t(cs.size()), [&](int64_t i) {
    const Case& c = cs[size_t(i)];
    Operands& o = ops[size_t(i)];
    detr::internal::gemm(c.ta, c.tb, c.M, c.N, c.K, o.A.data(), o.lda, o.B.data(), o.ldb, o.C.data(), o.ldc, c.beta);
  });
  for (auto& o : ops) CHECK(max_error(o) < 1e-4);
}

TEST_CASE("a very deep product with a small output (depth split) is right", "[gemm]") {
  // K 40960: four depth slices of 10240, each deep enough to qualify for a split of its own.
  std::mt19937 gen(9);
  for (bool ta : {false, true}) {
    Case c{48, 64, 40960, ta, false, 0, 0, 0, 0.5f};
    Operands o = make(c, gen);
    detr::internal::gemm(c.ta, c.tb, c.M, c.N, c.K, o.A.data(), o.lda, o.B.data(), o.ldb, o.C.data(), o.ldc, c.beta);
    INFO("ta " << ta);
    CHECK(max_error(o) <= 1e-5 * std::sqrt(double(c.K) + 1) + 1e-6);
  }
}

TEST_CASE("PackedB reuses one packed operand for many products", "[gemm]") {
  std::mt19937 gen(3);
  for (bool tb : {false, true})
    for (auto [N, K] : {std::pair<int64_t, int64_t>{850, 32}, {32, 850}, {70, 1030}}) {
      Case c{48, N, K, false, tb, 0, 3, 1, 0.f};
      Operands o = make(c, gen);
      detr::internal::PackedB<float> packed;
      packed.pack(tb, o.B.data(), o.ldb, K, N);
      // Two row blocks through the same packing, the second accumulating (beta 1).
      packed.multiply(false, 30, o.A.data(), o.lda, o.C.data(), o.ldc);
      packed.multiply(false, 18, o.A.data() + 30 * o.lda, o.lda, o.C.data() + 30 * o.ldc, o.ldc);
      INFO("N " << N << " K " << K << " tb " << tb);
      CHECK(max_error(o) <= 1e-5 * std::sqrt(double(K)) + 1e-6);
      // The transposed-A form, as attention's backward uses for dK and dV.
      Case t{40, N, K, true, tb, 2, 3, 0, 0.f};
      Operands p = make(t, gen);
      detr::internal::PackedB<float> packed_t;
      packed_t.pack(tb, p.B.data(), p.ldb, K, N);
      packed_t.multiply(true, 40, p.A.data(), p.lda, p.C.data(), p.ldc);
      CHECK(max_error(p) <= 1e-5 * std::sqrt(double(K)) + 1e-6);
    }
}

TEST_CASE("double gemm goes through Eigen with the same contract", "[gemm]") {
  const int64_t M = 3, N = 5, K = 4;
  std::vector<double> A(M * K), B(N * K), C(M * N, std::nan(""));  // C starts as NaN (beta 0)
  for (size_t i = 0; i < A.size(); ++i) A[i] = double(i) - 3;
  for (size_t i = 0; i < B.size(); ++i) B[i] = 0.5 * double(i % 7);
  detr::internal::gemm(false, true, M, N, K, A.data(), K, B.data(), K, C.data(), N, 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += A[i * K + k] * B[j * K + k];
      CHECK(C[i * N + j] == Approx(s));
    }
}

TEST_CASE("host memory cache reuses freed blocks and never mixes sizes", "[gemm][allocator]") {
  using detr::internal::HostCache;
  CHECK(HostCache::size_class(100) == 100);  // small: malloc's own bins
  CHECK(HostCache::size_class(1 << 20) == 1 << 20);
  CHECK(HostCache::size_class((1 << 20) + 1) == (1 << 20) + (1 << 17));  // eighths of a power of two
  CHECK(HostCache::size_class(3000000) >= 3000000);
  CHECK(HostCache::size_class(3000000) < 3000000 * 1.125 + 1);
  auto& cache = HostCache::instance();
  const size_t limit = cache.limit();  // 0 under AddressSanitizer: caching on for this test
  cache.set_limit(size_t(1) << 30);
  detr::release_cached_host_memory();
  const float* first;
  {
    auto t = detr::Tensor<float>::empty({1000, 1000});
    t.data()[999999] = 1.f;  // the whole rounded block is writable
    first = t.data();
  }
  CHECK(detr::cached_host_memory_bytes() >= 4000000);
  {
    auto u = detr::Tensor<float>::empty({1000, 1001});  // same size class: the cached block
    CHECK(u.data() == first);
    CHECK(detr::cached_host_memory_bytes() == 0);
    auto v = detr::Tensor<float>::zeros({1000, 1000});  // cache empty: a fresh, zeroed block
    CHECK(v.data() != first);
    CHECK(v.data()[123456] == 0.f);
  }
  CHECK(reinterpret_cast<uintptr_t>(detr::Tensor<float>::empty({70000}).data()) % 64 == 0);
  detr::release_cached_host_memory();
  CHECK(detr::cached_host_memory_bytes() == 0);
  cache.set_limit(0);  // a full cache keeps nothing more
  { auto t = detr::Tensor<float>::empty({100000}); }
  CHECK(detr::cached_host_memory_bytes() == 0);
  cache.set_limit(limit);
}
