// A host stand-in for the two backend parts that need the CUDA runtime and cuBLAS, so that the
// ops' CUDA code paths run without a GPU (test_cuda_ops_emulated): "device" memory is host
// memory, copies are memcpy, and gemm_ld is a plain column-major GEMM called with the arguments
// src/cuda/blas.cu passes to cublas<t>gemmStridedBatched (so its row-major / column-major swap is
// checked too).
#include <cstdlib>
#include <cstring>
#include <utility>

#include "detr/core/error.hpp"
#include "detr/gpu/blas.hpp"
#include "detr/gpu/runtime.hpp"

namespace detr::gpu {

namespace {
MemoryStats stats;

// cuBLAS's gemmStridedBatched semantics, column-major: C = op(A) op(B) + beta C, op(A) m x k.
template <class T>
void column_major_gemm(bool ta, bool tb, int m, int n, int k, const T* A, int lda, int64_t sa, const T* B, int ldb,
                       int64_t sb, T beta, T* C, int ldc, int64_t sc, int batch) {
  for (int p = 0; p < batch; ++p) {
    const T *a = A + p * sa, *b = B + p * sb;
    T* c = C + p * sc;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        T acc = T(0);
        for (int l = 0; l < k; ++l) acc += (ta ? a[l + i * lda] : a[i + l * lda]) * (tb ? b[j + l * ldb] : b[l + j * ldb]);
        c[i + j * ldc] = beta == T(0) ? acc : acc + beta * c[i + j * ldc];
      }
  }
}
}  // namespace

int device_count() noexcept { return 1; }
void require_device(const char*) {}
void* allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = std::malloc(bytes);
  DETR_CHECK(p, "emulated device: out of memory for " << bytes << " bytes");
  stats.in_use += bytes;
  stats.peak = std::max(stats.peak, stats.in_use);
  return p;
}
void deallocate(void* p, size_t bytes) noexcept {
  if (!p) return;
  stats.in_use -= bytes;
  std::free(p);
}
void copy_to_device(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void copy_to_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void copy_on_device(void* dst, const void* src, size_t bytes) {
  if (dst != src) std::memmove(dst, src, bytes);
}
void fill_bytes_zero(void* dst, size_t bytes) { std::memset(dst, 0, bytes); }
void synchronize() {}
MemoryStats memory_stats() { return stats; }
void reset_peak_memory() { stats.peak = stats.in_use; }
void* allocate_pinned(size_t bytes) { return std::malloc(bytes); }
void deallocate_pinned(void* p) noexcept { std::free(p); }

// The row-major to column-major swap of src/cuda/blas.cu, into the column-major reference.
template <class T>
void gemm_ld(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, int64_t sa, const T* B,
             int64_t ldb, int64_t sb, T* C, int64_t ldc, int64_t sc, int64_t batch, T beta) {
  if (M == 0 || N == 0 || batch == 0) return;
  column_major_gemm(tb, ta, int(N), int(M), int(K), B, int(ldb), sb, A, int(lda), sa, beta, C, int(ldc), sc,
                    int(batch));
}
template void gemm_ld<float>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*,
                             int64_t, int64_t, float*, int64_t, int64_t, int64_t, float);
template void gemm_ld<double>(bool, bool, int64_t, int64_t, int64_t, const double*, int64_t, int64_t, const double*,
                              int64_t, int64_t, double*, int64_t, int64_t, int64_t, double);

}  // namespace detr::gpu
