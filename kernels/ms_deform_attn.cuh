#pragma once
// Multi-scale deformable attention on CUDA: forward and backward for float, half and bfloat16
// storage, always accumulating in float. The per-sample bilinear math (which neighbours, their
// weights and weight derivatives, the location and weight gradients) is the DETR_HD code of
// ops/ms_deform_attn_math.hpp that the CPU op runs, so the CPU tests exercise it.
//
// Layout: one warp per (b, q, h) output row, lanes over the head dimension d (coalesced 32-wide
// reads of each neighbour's value row); the warp walks the L * P samples in order and reduces
// the per-sample dot products with a fixed butterfly, so the location and attention-weight
// gradients are deterministic in both modes. The value gradient is a scatter:
// - MSDABackward::atomic: float atomicAdd into a float buffer (fast, order-dependent bits);
// - MSDABackward::deterministic: each (sample, neighbour) contribution is keyed by the value row
//   it lands in, keys are stably sorted (entry order kept within a row), and one warp per value
//   row sums its contributions in that fixed order: the same bits on every run.
// Unlike the reference kernels (float / double only, atomics only), both modes and all three
// storage types are offered.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <thrust/binary_search.h>
#include <thrust/execution_policy.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/sequence.h>
#include <thrust/sort.h>

#include <climits>
#include <type_traits>

#include "detr/core/cuda_tensor.hpp"
#include "detr/gpu/cuda_check.cuh"
#include "detr/ops/ms_deform_attn.hpp"

namespace detr::kernels {

enum class MSDABackward { atomic, deterministic };

// Storage <-> float.
__device__ inline float to_float(float v) { return v; }
__device__ inline float to_float(__half v) { return __half2float(v); }
__device__ inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class V>
__device__ inline V from_float(float v) {
  if constexpr (std::is_same_v<V, __half>) return __float2half(v);
  else if constexpr (std::is_same_v<V, __nv_bfloat16>) return __float2bfloat16(v);
  else return v;
}

namespace msda {

constexpr int kMaxLevels = 16;
constexpr int kThreads = 256;  // 8 warps per block

// Level sizes and offsets, passed by value to the kernels.
struct Levels {
  int64_t h[kMaxLevels], w[kMaxLevels], start[kMaxLevels];
};

inline Levels levels_of(const Tensor<int64_t>& shapes, const Tensor<int64_t>& starts) {
  Levels lv{};
  const int64_t L = shapes.dim(0);
  DETR_CHECK(L <= kMaxLevels, "ms_deform_attn (CUDA): at most " << kMaxLevels << " levels, got " << L);
  for (int64_t l = 0; l < L; ++l) {
    lv.h[l] = shapes.data()[2 * l];
    lv.w[l] = shapes.data()[2 * l + 1];
    lv.start[l] = starts.data()[l];
  }
  return lv;
}

inline int blocks_for(int64_t threads) {
  return int(std::max<int64_t>(1, std::min<int64_t>((threads + kThreads - 1) / kThreads, 65535)));
}

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// out [B, Q, H, D]
template <class V>
__global__ void forward_kernel(internal::MSDeformAttnDims n, Levels lv, const V* value, const V* loc,
                               const V* attn, V* out) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = n.B * n.Q * n.H, warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; r < rows; r += warps) {
    const int64_t b = r / (n.Q * n.H), h = r % n.H;
    for (int64_t d0 = 0; d0 < n.D; d0 += 32) {
      const int64_t d = d0 + lane;
      float acc = 0.f;
      for (int64_t l = 0; l < n.L; ++l) {
        const V* base = value + ((b * n.S + lv.start[l]) * n.H + h) * n.D;
        for (int64_t p = 0; p < n.P; ++p) {
          const int64_t i = (r * n.L + l) * n.P + p;
          internal::BilinearSample<float> s;
          if (!internal::bilinear_sample(to_float(loc[2 * i]), to_float(loc[2 * i + 1]), lv.h[l], lv.w[l], s)) continue;
          const float a = to_float(attn[i]);
          for (int c = 0; c < 4; ++c)
            if (s.offset[c] >= 0 && d < n.D) acc += a * s.weight[c] * to_float(base[s.offset[c] * n.H * n.D + d]);
        }
      }
      if (d < n.D) out[r * n.D + d] = from_float<V>(acc);
    }
  }
}

// grad_loc [B, Q, H, L, P, 2], grad_attn [B, Q, H, L, P]; with value_acc (float [B, S, H, D],
// zeroed) also the value gradient by atomicAdd.
template <class V>
__global__ void backward_kernel(internal::MSDeformAttnDims n, Levels lv, const V* value, const V* loc,
                                const V* attn, const V* grad_out, float* value_acc, V* grad_loc, V* grad_attn) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = n.B * n.Q * n.H, warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; r < rows; r += warps) {
    const int64_t b = r / (n.Q * n.H), h = r % n.H;
    for (int64_t l = 0; l < n.L; ++l) {
      const int64_t first = (b * n.S + lv.start[l]) * n.H + h;  // value row of the level's pixel 0
      for (int64_t p = 0; p < n.P; ++p) {
        const int64_t i = (r * n.L + l) * n.P + p;
        internal::BilinearSample<float> s;
        if (!internal::bilinear_sample(to_float(loc[2 * i]), to_float(loc[2 * i + 1]), lv.h[l], lv.w[l], s)) {
          if (lane == 0) grad_attn[i] = grad_loc[2 * i] = grad_loc[2 * i + 1] = from_float<V>(0.f);
          continue;
        }
        const float a = to_float(attn[i]);
        float dots[4] = {0.f, 0.f, 0.f, 0.f};
        for (int64_t d = lane; d < n.D; d += 32) {
          const float g = to_float(grad_out[r * n.D + d]);
          for (int c = 0; c < 4; ++c) {
            if (s.offset[c] < 0) continue;
            const int64_t row = first + s.offset[c] * n.H;
            dots[c] += g * to_float(value[row * n.D + d]);
            if (value_acc) atomicAdd(value_acc + row * n.D + d, a * s.weight[c] * g);
          }
        }
        for (int c = 0; c < 4; ++c) dots[c] = warp_sum(dots[c]);
        if (lane == 0) {
          const internal::SampleGrad<float> sg = internal::sample_grad(s, dots, a, lv.h[l], lv.w[l]);
          grad_attn[i] = from_float<V>(sg.attn);
          grad_loc[2 * i] = from_float<V>(sg.loc_x);
          grad_loc[2 * i + 1] = from_float<V>(sg.loc_y);
        }
      }
    }
  }
}

// Deterministic value gradient, step 1: entry 4 * i + c (sample i, neighbour c) gets the value
// row it lands in (`none` when outside) and its coefficient attention * bilinear weight.
template <class V>
__global__ void emit_kernel(internal::MSDeformAttnDims n, Levels lv, const V* loc, const V* attn, int32_t none,
                            int32_t* keys, float* coef) {
  const int64_t samples = n.B * n.Q * n.H * n.L * n.P;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < samples; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / (n.L * n.P), l = (i / n.P) % n.L, b = r / (n.Q * n.H), h = r % n.H;
    internal::BilinearSample<float> s;
    const bool ok = internal::bilinear_sample(to_float(loc[2 * i]), to_float(loc[2 * i + 1]), lv.h[l], lv.w[l], s);
    const float a = to_float(attn[i]);
    for (int c = 0; c < 4; ++c) {
      const bool valid = ok && s.offset[c] >= 0;
      keys[4 * i + c] = valid ? int32_t((b * n.S + lv.start[l] + s.offset[c]) * n.H + h) : none;
      coef[4 * i + c] = valid ? a * s.weight[c] : 0.f;
    }
  }
}

// Step 3: one warp per value row sums its entries (sorted, in entry order) times grad_out.
template <class V>
__global__ void gather_kernel(internal::MSDeformAttnDims n, int64_t value_rows, const int64_t* bounds,
                              const int32_t* order, const float* coef, const V* grad_out, V* grad_value) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; row < value_rows; row += warps) {
    for (int64_t d = lane; d < n.D; d += 32) {
      float acc = 0.f;
      for (int64_t k = bounds[row]; k < bounds[row + 1]; ++k) {
        const int64_t e = order[k], r = (e / 4) / (n.L * n.P);  // entry -> sample -> (b, q, h) row
        acc += coef[e] * to_float(grad_out[r * n.D + d]);
      }
      grad_value[row * n.D + d] = from_float<V>(acc);
    }
  }
}

template <class V>
__global__ void float_to_storage_kernel(int64_t count, const float* src, V* dst) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_float<V>(src[i]);
}

template <class To, class From>
__global__ void cast_kernel(int64_t count, const From* src, To* dst) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_float<To>(to_float(src[i]));
}

template <class V>
internal::MSDeformAttnDims check(const Tensor<V, cuda>& value, const Tensor<int64_t>& shapes,
                                 const Tensor<int64_t>& starts, const Tensor<V, cuda>& loc,
                                 const Tensor<V, cuda>& attn) {
  return internal::ms_deform_attn_dims<float>(value.shape(), shapes, starts, loc.shape(), attn.shape());
}

// Reports a failed launch; the kernels run on DETR++'s stream without the host waiting for them.
inline void check_launch() { DETR_CUDA_CHECK(cudaGetLastError()); }

}  // namespace msda

// Element-wise storage conversion on the device (float <-> half / bfloat16), for tests and callers
// that keep float masters.
template <class To, class From>
Tensor<To, cuda> cast(const Tensor<From, cuda>& x) {
  auto y = Tensor<To, cuda>::empty(x.shape());
  if (x.numel()) {
    msda::cast_kernel<To, From><<<msda::blocks_for(x.numel()), msda::kThreads, 0, gpu::stream()>>>(x.numel(), x.data(), y.data());
    msda::check_launch();
  }
  return y;
}

// value [B, S, H, D], spatial_shapes [L, 2] and level_start_index [L] (host),
// sampling_locations [B, Q, H, L, P, 2], attention_weights [B, Q, H, L, P] -> out [B, Q, H * D]
// (preallocated, so that repeated calls allocate nothing).
template <class V>
void ms_deform_attn_forward(const Tensor<V, cuda>& value, const Tensor<int64_t>& spatial_shapes,
                            const Tensor<int64_t>& level_start_index, const Tensor<V, cuda>& sampling_locations,
                            const Tensor<V, cuda>& attention_weights, Tensor<V, cuda>& out) {
  const auto n = msda::check(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  DETR_CHECK(out.shape() == Shape({n.B, n.Q, n.H * n.D}),
             "ms_deform_attn_forward: out must be " << Shape({n.B, n.Q, n.H * n.D}) << ", got " << out.shape());
  if (out.numel() == 0) return;
  msda::forward_kernel<V><<<msda::blocks_for(n.B * n.Q * n.H * 32), msda::kThreads, 0, gpu::stream()>>>(
      n, msda::levels_of(spatial_shapes, level_start_index), value.data(), sampling_locations.data(),
      attention_weights.data(), out.data());
  msda::check_launch();
}

template <class V>
Tensor<V, cuda> ms_deform_attn_forward(const Tensor<V, cuda>& value, const Tensor<int64_t>& spatial_shapes,
                                       const Tensor<int64_t>& level_start_index, const Tensor<V, cuda>& sampling_locations,
                                       const Tensor<V, cuda>& attention_weights) {
  const auto n = msda::check(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  auto out = Tensor<V, cuda>::empty({n.B, n.Q, n.H * n.D});
  ms_deform_attn_forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, out);
  return out;
}

template <class V>
struct MSDAGrads {
  Tensor<V, cuda> value, sampling_locations, attention_weights;  // shapes of the inputs
};

// Scratch of the backward, grown on demand and kept between calls.
struct MSDAWorkspace {
  Tensor<float, cuda> acc, coef;  // float value-gradient accumulator (atomic), entry coefficients
  Tensor<int32_t, cuda> keys, order;
  Tensor<int64_t, cuda> bounds;
};

namespace msda {
template <class T>
T* grown(Tensor<T, cuda>& b, int64_t n) {
  if (!b.defined() || b.numel() < n) b = Tensor<T, cuda>::empty({n});
  return b.data();
}
}  // namespace msda

// Gradients of value, sampling_locations and attention_weights given grad_out [B, Q, H * D],
// into preallocated tensors of the inputs' shapes.
template <class V>
void ms_deform_attn_backward(const Tensor<V, cuda>& value, const Tensor<int64_t>& spatial_shapes,
                             const Tensor<int64_t>& level_start_index, const Tensor<V, cuda>& sampling_locations,
                             const Tensor<V, cuda>& attention_weights, const Tensor<V, cuda>& grad_out, MSDAGrads<V>& g,
                             MSDABackward mode, MSDAWorkspace& ws) {
  const auto n = msda::check(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  DETR_CHECK(grad_out.shape() == Shape({n.B, n.Q, n.H * n.D}),
             "ms_deform_attn_backward: grad_out must be " << Shape({n.B, n.Q, n.H * n.D}) << ", got " << grad_out.shape());
  DETR_CHECK(g.value.shape() == value.shape() && g.sampling_locations.shape() == sampling_locations.shape() &&
                 g.attention_weights.shape() == attention_weights.shape(),
             "ms_deform_attn_backward: gradients must have the inputs' shapes " << value.shape() << ", "
                 << sampling_locations.shape() << ", " << attention_weights.shape() << "; got " << g.value.shape()
                 << ", " << g.sampling_locations.shape() << ", " << g.attention_weights.shape());
  const msda::Levels lv = msda::levels_of(spatial_shapes, level_start_index);
  const int64_t rows = n.B * n.Q * n.H, value_rows = n.B * n.S * n.H, samples = rows * n.L * n.P;
  if (samples == 0) {
    if (value.numel()) gpu::fill_bytes_zero(g.value.data(), sizeof(V) * value.numel());
    return;
  }
  if (mode == MSDABackward::atomic) {
    float* acc = nullptr;
    if constexpr (std::is_same_v<V, float>) acc = g.value.data();
    else acc = msda::grown(ws.acc, value.numel());
    gpu::fill_bytes_zero(acc, sizeof(float) * value.numel());
    msda::backward_kernel<V><<<msda::blocks_for(rows * 32), msda::kThreads, 0, gpu::stream()>>>(
        n, lv, value.data(), sampling_locations.data(), attention_weights.data(), grad_out.data(), acc,
        g.sampling_locations.data(), g.attention_weights.data());
    if constexpr (!std::is_same_v<V, float>)
      msda::float_to_storage_kernel<V><<<msda::blocks_for(value.numel()), msda::kThreads, 0, gpu::stream()>>>(value.numel(), acc, g.value.data());
    msda::check_launch();
    return;
  }
  msda::backward_kernel<V><<<msda::blocks_for(rows * 32), msda::kThreads, 0, gpu::stream()>>>(
      n, lv, value.data(), sampling_locations.data(), attention_weights.data(), grad_out.data(), nullptr,
      g.sampling_locations.data(), g.attention_weights.data());
  const int64_t entries = 4 * samples;
  DETR_CHECK(entries < INT32_MAX && value_rows < INT32_MAX,
             "ms_deform_attn_backward (deterministic): " << entries << " entries / " << value_rows
                                                         << " value rows exceed the 32-bit sort keys");
  int32_t* keys = msda::grown(ws.keys, entries);
  int32_t* order = msda::grown(ws.order, entries);
  float* coef = msda::grown(ws.coef, entries);
  int64_t* bounds = msda::grown(ws.bounds, value_rows + 1);
  msda::emit_kernel<V><<<msda::blocks_for(samples), msda::kThreads, 0, gpu::stream()>>>(
      n, lv, sampling_locations.data(), attention_weights.data(), int32_t(value_rows), keys, coef);
  DETR_CUDA_CHECK(cudaGetLastError());
  thrust::sequence(thrust::cuda::par_nosync.on(gpu::stream()), order, order + entries);
  thrust::stable_sort_by_key(thrust::cuda::par_nosync.on(gpu::stream()), keys, keys + entries, order);
  thrust::lower_bound(thrust::cuda::par_nosync.on(gpu::stream()), keys, keys + entries, thrust::counting_iterator<int32_t>(0),
                      thrust::counting_iterator<int32_t>(int32_t(value_rows + 1)), bounds);
  msda::gather_kernel<V><<<msda::blocks_for(value_rows * 32), msda::kThreads, 0, gpu::stream()>>>(n, value_rows, bounds, order, coef,
                                                                                 grad_out.data(), g.value.data());
  msda::check_launch();
}

template <class V>
MSDAGrads<V> ms_deform_attn_backward(const Tensor<V, cuda>& value, const Tensor<int64_t>& spatial_shapes,
                                     const Tensor<int64_t>& level_start_index, const Tensor<V, cuda>& sampling_locations,
                                     const Tensor<V, cuda>& attention_weights, const Tensor<V, cuda>& grad_out,
                                     MSDABackward mode = MSDABackward::deterministic) {
  MSDAGrads<V> g{Tensor<V, cuda>::empty(value.shape()), Tensor<V, cuda>::empty(sampling_locations.shape()),
                 Tensor<V, cuda>::empty(attention_weights.shape())};
  MSDAWorkspace ws;
  ms_deform_attn_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_out, g,
                          mode, ws);
  return g;
}

}  // namespace detr::kernels
