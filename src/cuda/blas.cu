// detr/gpu/blas.hpp through cuBLAS. cuBLAS is column-major: a row-major C = op(A) op(B) is the
// column-major C^T = op(B)^T op(A)^T, so the operands are passed swapped, with no copies.
#include <cublas_v2.h>

#include <climits>
#include <utility>

#include "detr/gpu/blas.hpp"
#include "detr/gpu/cuda_check.cuh"

#define DETR_CUBLAS_CHECK(expr)                                                                      \
  do {                                                                                               \
    cublasStatus_t detr_cublas_status_ = (expr);                                                     \
    DETR_CHECK(detr_cublas_status_ == CUBLAS_STATUS_SUCCESS,                                         \
               "cuBLAS error in " #expr ": " << cublasGetStatusString(detr_cublas_status_));          \
  } while (0)

namespace detr::gpu {

namespace {
cublasHandle_t handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t created;
    DETR_CUBLAS_CHECK(cublasCreate(&created));
    DETR_CUBLAS_CHECK(cublasSetStream(created, stream()));
    return created;  // never destroyed: tensors in static storage may still run products at exit
  }();
  return h;
}

void check_int(int64_t v, const char* what) {
  DETR_CHECK(v >= 0 && v <= INT_MAX, "gemm (CUDA): " << what << " = " << v << " exceeds cuBLAS's 32-bit sizes");
}
}  // namespace

template <class T>
void gemm_ld(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, int64_t sa, const T* B,
             int64_t ldb, int64_t sb, T* C, int64_t ldc, int64_t sc, int64_t batch, T beta) {
  if (M == 0 || N == 0 || batch == 0) return;
  for (auto [v, what] : {std::pair{M, "M"}, {N, "N"}, {K, "K"}, {batch, "batch"}, {lda, "lda"}, {ldb, "ldb"},
                         {ldc, "ldc"}})
    check_int(v, what);
  const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const T alpha = T(1);
  if constexpr (std::is_same_v<T, float>)
    DETR_CUBLAS_CHECK(cublasSgemmStridedBatched(handle(), op_b, op_a, int(N), int(M), int(K), &alpha, B, int(ldb), sb,
                                                A, int(lda), sa, &beta, C, int(ldc), sc, int(batch)));
  else
    DETR_CUBLAS_CHECK(cublasDgemmStridedBatched(handle(), op_b, op_a, int(N), int(M), int(K), &alpha, B, int(ldb), sb,
                                                A, int(lda), sa, &beta, C, int(ldc), sc, int(batch)));
}


template void gemm_ld<float>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*,
                             int64_t, int64_t, float*, int64_t, int64_t, int64_t, float);
template void gemm_ld<double>(bool, bool, int64_t, int64_t, int64_t, const double*, int64_t, int64_t, const double*,
                              int64_t, int64_t, double*, int64_t, int64_t, int64_t, double);

}  // namespace detr::gpu
