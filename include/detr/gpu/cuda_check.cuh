#pragma once
// For backend code that includes the CUDA headers: errors as detr::Error, and the stream that all
// of DETR++'s device work goes to (detr/gpu/runtime.hpp says why there is one).
#include <cuda_runtime_api.h>

#include "detr/core/error.hpp"

// Throws detr::Error with the failing expression and CUDA's own message.
#define DETR_CUDA_CHECK(expr)                                                                 \
  do {                                                                                        \
    cudaError_t detr_cuda_err_ = (expr);                                                      \
    DETR_CHECK(detr_cuda_err_ == cudaSuccess,                                                 \
               "CUDA error in " #expr ": " << cudaGetErrorString(detr_cuda_err_));            \
  } while (0)

namespace detr::gpu {
cudaStream_t stream();
}  // namespace detr::gpu
