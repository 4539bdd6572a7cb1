#pragma once
// The execution policy of every backend kernel: DETR++'s stream, no synchronisation after the
// launch (Thrust's default `par` would wait for each algorithm to finish). With
// DETR_GPU_EMULATED the same backend sources build for Thrust's sequential host system instead
// (tests/emulated_backend: the whole CUDA path of the ops runs in CI without a GPU).
#if defined(DETR_GPU_EMULATED)
#include <thrust/system/cpp/execution_policy.h>
#else
#include <thrust/execution_policy.h>

#include "detr/gpu/cuda_check.cuh"
#endif
#include "detr/gpu/runtime.hpp"

namespace detr::gpu {

#if defined(DETR_GPU_EMULATED)
inline auto on_stream() { return thrust::cpp::par; }
#else
inline auto on_stream() { return thrust::cuda::par_nosync.on(stream()); }
#endif

// Scratch device memory for one call, returned to the stream-ordered pool when it goes out of scope.
template <class T>
struct Scratch {
  explicit Scratch(int64_t n) : bytes(size_t(n) * sizeof(T)), data(static_cast<T*>(allocate(bytes))) {}
  ~Scratch() { deallocate(data, bytes); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  size_t bytes;
  T* data;
};

}  // namespace detr::gpu
