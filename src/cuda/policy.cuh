#pragma once
// The execution policy of every backend kernel: DETR++'s stream, no synchronisation after the
// launch (Thrust's default `par` would wait for each algorithm to finish).
#include <thrust/execution_policy.h>

#include "detr/gpu/cuda_check.cuh"
#include "detr/gpu/runtime.hpp"

namespace detr::gpu {

inline auto on_stream() { return thrust::cuda::par_nosync.on(stream()); }

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
