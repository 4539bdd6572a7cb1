#pragma once
// Device tags: a tensor's device is part of its type (Tensor<T, cpu>, Var<T, cuda>), so a CPU op
// can never be handed device memory by mistake. An op has one forward/backward pair whose body
// chooses the device's code at compile time with `if constexpr (is_cuda<D>)`; the CUDA side calls
// the compiled backend declared in detr/gpu/ (library detr::cuda), so code that uses Var<T, cuda>
// is ordinary C++ compiled by the host compiler, and only the backend goes through nvcc.
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

template <class D>
inline constexpr bool is_cuda = std::is_same_v<D, cuda>;

}  // namespace detr

// Per-element math shared by CPU loops and CUDA kernels is marked DETR_HD.
#if defined(__CUDACC__)
#define DETR_HD __host__ __device__
#else
#define DETR_HD
#endif
