#pragma once
// How the backend's kernels run: a Thrust for_each over flat indices with a DETR_HD body. The
// execution policy is a parameter, so the same kernels build twice: for the GPU (src/cuda, on
// DETR++'s stream without synchronising) and for Thrust's sequential host system, which a CPU
// test target compares against the CPU ops (tests/test_gpu_kernels_host.cpp). Include only from
// those two places: this header needs Thrust (CUDA's CCCL).
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <cstdint>

namespace detr::gpu::kernels {

template <class Exec, class Body>
void for_each_index(const Exec& exec, int64_t n, const Body& body) {
  if (n > 0) thrust::for_each_n(exec, thrust::counting_iterator<int64_t>(0), n, body);
}

}  // namespace detr::gpu::kernels
