// CUDA device buffer and the shared-body kernel pattern. Exits 77 (ctest: skipped) without a GPU.
#include <cstdio>

#include "detr/core/rng.hpp"
#include "kernels/elementwise.cuh"

int main() {
  if (detr::cuda_device_count() == 0) {
    std::puts("no CUDA device: skipped");
    return 77;
  }
  int failures = 0;
  auto expect = [&](bool ok, const char* what) {
    if (!ok) {
      std::printf("FAILED: %s\n", what);
      ++failures;
    }
  };
  detr::Rng rng(1);
  auto hx = rng.uniform_tensor<float>({1000003}, -1, 1), hy = rng.uniform_tensor<float>({1000003}, -1, 1);
  auto dx = detr::CudaTensor<float>::from_host(hx), dy = detr::CudaTensor<float>::from_host(hy);
  auto round_trip = dx.to_host();
  expect(round_trip.to_vector() == hx.to_vector(), "host -> device -> host round trip");
  auto dy2 = dy.clone();
  detr::kernels::axpy(2.0f, dx, dy2);
  auto got = dy2.to_host();
  bool same = true;
  for (int64_t i = 0; i < hx.numel(); ++i)  // identical math on both sides: exact
    same = same && got.data()[i] == detr::kernels::axpy_element(2.0f, hx.data()[i], hy.data()[i]);
  expect(same, "axpy kernel equals the shared host body");
  expect(dy.to_host().to_vector() == hy.to_vector(), "clone() is a deep copy");
  detr::DeviceBuffer<float> moved = detr::DeviceBuffer<float>(16);
  expect(moved.size() == 16 && moved.data() != nullptr, "move-only buffer");
  std::printf("%d passed, %d failed\n", 4 - failures, failures);
  return failures ? 1 : 0;
}
