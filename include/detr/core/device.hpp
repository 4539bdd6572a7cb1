#pragma once
// Device tags: a tensor's device is part of its type, so a CPU op can never be handed device
// memory by mistake. Backends dispatch with `if constexpr (std::is_same_v<Device, cuda>)`.
#include <type_traits>

namespace detr {

struct cpu {
  static constexpr const char* name = "cpu";
};
struct cuda {
  static constexpr const char* name = "cuda";
};

template <class D>
concept DeviceTag = std::is_same_v<D, cpu> || std::is_same_v<D, cuda>;

}  // namespace detr

// Per-element math shared by CPU loops and CUDA kernels is marked DETR_HD.
#if defined(__CUDACC__)
#define DETR_HD __host__ __device__
#else
#define DETR_HD
#endif
