// detr/gpu/blas.hpp through cuBLAS. cuBLAS is column-major: a row-major C = op(A) op(B) is the
// column-major C^T = op(B)^T op(A)^T, so the operands are passed swapped, with no copies.
#include <cublas_v2.h>

#include <climits>

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
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, const T* B, T* C, int64_t batch,
          int64_t sa, int64_t sb, int64_t sc, T beta) {
  if (M == 0 || N == 0 || batch == 0) return;
  check_int(M, "M");
  check_int(N, "N");
  check_int(K, "K");
  check_int(batch, "batch");
  const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int lda = int(ta ? M : K), ldb = int(tb ? K : N), ldc = int(N);
  const T alpha = T(1);
  if constexpr (std::is_same_v<T, float>)
    DETR_CUBLAS_CHECK(cublasSgemmStridedBatched(handle(), op_b, op_a, int(N), int(M), int(K), &alpha, B, ldb, sb, A,
                                                lda, sa, &beta, C, ldc, sc, int(batch)));
  else
    DETR_CUBLAS_CHECK(cublasDgemmStridedBatched(handle(), op_b, op_a, int(N), int(M), int(K), &alpha, B, ldb, sb, A,
                                                lda, sa, &beta, C, ldc, sc, int(batch)));
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, const float*, const float*, float*, int64_t, int64_t,
                          int64_t, int64_t, float);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, const double*, const double*, double*, int64_t,
                           int64_t, int64_t, int64_t, double);

}  // namespace detr::gpu
