// GEMM throughput: detr's internal::gemm (our packed AVX-512 kernel for float, ops/gemm.hpp) against
// OpenBLAS's cblas_sgemm on the same machine and thread count. Reports GFLOP/s as a counter.
#include <benchmark/benchmark.h>

#include "detr/core/rng.hpp"
#include "detr/ops/linalg.hpp"

#ifdef DETR_HAVE_CBLAS
extern "C" void cblas_sgemm(int, int, int, int, int, int, float, const float*, int, const float*,
                            int, float, float*, int);
#endif

namespace {
void set_flops(benchmark::State& s, double m, double n, double k) {
  s.counters["GFLOP/s"] = benchmark::Counter(2 * m * n * k * double(s.iterations()) / 1e9,
                                             benchmark::Counter::kIsRate);
}

void BM_detr_sgemm(benchmark::State& s) {
  const int64_t M = s.range(0), N = s.range(1), K = s.range(2);
  detr::Rng rng(1);
  auto a = rng.uniform_tensor<float>({M, K}, -1, 1), b = rng.uniform_tensor<float>({K, N}, -1, 1);
  auto c = detr::Tensor<float>::empty({M, N});
  for (auto _ : s) {
    detr::internal::gemm(false, false, M, N, K, a.data(), b.data(), c.data());
    benchmark::DoNotOptimize(c.data());
  }
  set_flops(s, M, N, K);
}
BENCHMARK(BM_detr_sgemm)->Args({1024, 1024, 1024})->Args({1700, 256, 256})->Args({1700, 2048, 256})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

#ifdef DETR_HAVE_CBLAS
void BM_openblas_sgemm(benchmark::State& s) {
  const int M = int(s.range(0)), N = int(s.range(1)), K = int(s.range(2));
  detr::Rng rng(1);
  auto a = rng.uniform_tensor<float>({M, K}, -1, 1), b = rng.uniform_tensor<float>({K, N}, -1, 1);
  auto c = detr::Tensor<float>::empty({M, N});
  for (auto _ : s) {
    cblas_sgemm(101 /*RowMajor*/, 111 /*NoTrans*/, 111, M, N, K, 1.f, a.data(), K, b.data(), N, 0.f,
                c.data(), N);
    benchmark::DoNotOptimize(c.data());
  }
  set_flops(s, M, N, K);
}
BENCHMARK(BM_openblas_sgemm)->Args({1024, 1024, 1024})->Args({1700, 256, 256})->Args({1700, 2048, 256})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
#endif
}  // namespace

BENCHMARK_MAIN();
