#pragma once
// Matrix products on the device through cuBLAS (src/cuda/blas.cu), declared for any host compiler.
#include <cstdint>

namespace detr::gpu {

// C = op(A) @ op(B) + beta * C for `batch` row-major products with element strides sa, sb, sc
// between them (sb = 0: one B for all). op(A) is [M, K] (A stored [K, M] when ta), op(B) is
// [K, N] (B stored [N, K] when tb), C is [M, N]; lda, ldb, ldc are the row strides of the stored
// matrices (heads are read in place from [B, L, H * Dh] projections with lda = H * Dh). fp32 math
// (no TF32), as the CPU ops.
template <class T>
void gemm_ld(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, int64_t sa, const T* B,
             int64_t ldb, int64_t sb, T* C, int64_t ldc, int64_t sc, int64_t batch, T beta = T(0));

// The same for contiguous matrices.
template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, const T* B, T* C, int64_t batch = 1,
          int64_t sa = 0, int64_t sb = 0, int64_t sc = 0, T beta = T(0)) {
  gemm_ld(ta, tb, M, N, K, A, ta ? M : K, sa, B, tb ? K : N, sb, C, N, sc, batch, beta);
}

}  // namespace detr::gpu
