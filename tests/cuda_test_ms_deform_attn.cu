// CUDA multi-scale deformable attention against the CPU op (which runs the same per-sample
// math): forward and all three gradients in float, half and bfloat16 storage, the atomic and the
// deterministic backward, and bit-identical deterministic backward runs. Inputs include samples
// on the borders and outside the maps, and a head size that is not a multiple of the warp.
// Exits 77 (ctest: skipped) without a GPU. With --bench it instead times the kernels at the
// shapes of benchmarks/compare.sh msda (levels 64/32/16/8, S = 5440, B = 2, H = 8, D = 32, L = 4,
// P = 4; encoder Q = 5440, decoder Q = 300) in float and bfloat16 and prints the times and the
// bandwidth of the minimum traffic (every input read once, every output written once).
#include <cstdio>
#include <cstring>
#include <string>

#include "detr/core/rng.hpp"
#include "kernels/ms_deform_attn.cuh"

namespace {

int failures = 0, checks = 0;

void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    std::printf("FAILED: %s\n", what.c_str());
    ++failures;
  }
}

// max |a - b| <= atol + rtol * |b|, reporting the worst element.
void expect_close(const detr::Tensor<float>& a, const detr::Tensor<float>& b, double rtol, double atol,
                  const std::string& what) {
  bool ok = a.shape() == b.shape();
  double worst = 0;
  int64_t at = -1;
  for (int64_t i = 0; ok && i < a.numel(); ++i) {
    const double x = a.data()[i], y = b.data()[i], excess = std::abs(x - y) - (atol + rtol * std::abs(y));
    if (!(excess <= 0) && (at < 0 || excess > worst)) worst = excess, at = i;
  }
  if (at >= 0)
    std::printf("  %s: element %lld: %g vs %g\n", what.c_str(), (long long)at, a.data()[at], b.data()[at]);
  expect(ok && at < 0, what);
}

bool same_bits(const detr::Tensor<float>& a, const detr::Tensor<float>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(float) * a.numel()) == 0;
}

struct Case {
  const char* name;
  int64_t B, H, D, Q, P;
  std::vector<int64_t> shapes;  // H_0, W_0, H_1, W_1, ...
};

// Storage V on the device from float host data, and back (through the device cast).
template <class V>
detr::Tensor<V, detr::cuda> upload(const detr::Tensor<float>& h) {
  return detr::kernels::cast<V>(detr::CudaTensor<float>::from_host(h));
}
template <class V>
detr::Tensor<float> download(const detr::Tensor<V, detr::cuda>& d) {
  return detr::kernels::cast<float>(d).to_host();
}

template <class V>
void run_case(const Case& c, const char* type, double rtol, double atol) {
  const int64_t L = int64_t(c.shapes.size()) / 2;
  auto shapes = detr::Tensor<int64_t>::empty({L, 2}), starts = detr::Tensor<int64_t>::empty({L});
  int64_t S = 0;
  for (int64_t l = 0; l < L; ++l) {
    shapes.data()[2 * l] = c.shapes[2 * l];
    shapes.data()[2 * l + 1] = c.shapes[2 * l + 1];
    starts.data()[l] = S;
    S += c.shapes[2 * l] * c.shapes[2 * l + 1];
  }
  detr::Rng rng(42);
  // The device copies in V; the CPU reference runs in float on the same (rounded) values.
  auto value = upload<V>(rng.normal_tensor<float>({c.B, S, c.H, c.D}));
  auto loc = upload<V>(rng.uniform_tensor<float>({c.B, c.Q, c.H, L, c.P, 2}, -0.15, 1.15));
  auto attn = upload<V>(rng.uniform_tensor<float>({c.B, c.Q, c.H, L, c.P}, 0, 1));
  auto grad_out = upload<V>(rng.normal_tensor<float>({c.B, c.Q, c.H * c.D}));

  detr::Var<float> cv(download(value), true), cl(download(loc), true), ca(download(attn), true);
  detr::Var<float> ref = detr::ms_deform_attn(cv, shapes, starts, cl, ca);
  ref.backward(download(grad_out));

  const std::string tag = std::string(c.name) + " " + type + ": ";
  auto out = detr::kernels::ms_deform_attn_forward(value, shapes, starts, loc, attn);
  expect_close(download(out), ref.value(), rtol, atol, tag + "forward");
  for (auto mode : {detr::kernels::MSDABackward::atomic, detr::kernels::MSDABackward::deterministic}) {
    const std::string m = tag + (mode == detr::kernels::MSDABackward::atomic ? "atomic " : "deterministic ");
    auto g = detr::kernels::ms_deform_attn_backward(value, shapes, starts, loc, attn, grad_out, mode);
    expect_close(download(g.value), cv.grad(), rtol, atol, m + "grad value");
    expect_close(download(g.attention_weights), ca.grad(), rtol, atol, m + "grad attention_weights");
    // Location gradients are scaled by W and H.
    expect_close(download(g.sampling_locations), cl.grad(), rtol, atol * 8, m + "grad sampling_locations");
  }
  auto g1 = detr::kernels::ms_deform_attn_backward(value, shapes, starts, loc, attn, grad_out);
  auto g2 = detr::kernels::ms_deform_attn_backward(value, shapes, starts, loc, attn, grad_out);
  expect(same_bits(download(g1.value), download(g2.value)) &&
             same_bits(download(g1.sampling_locations), download(g2.sampling_locations)) &&
             same_bits(download(g1.attention_weights), download(g2.attention_weights)),
         tag + "deterministic backward gives the same bits twice");
}

// Mean milliseconds of f over `reps` runs after 3 warm-up runs (each launcher synchronises).
template <class F>
double time_ms(F&& f, int reps = 20) {
  for (int i = 0; i < 3; ++i) f();
  cudaEvent_t start, stop;
  DETR_CUDA_CHECK(cudaEventCreate(&start));
  DETR_CUDA_CHECK(cudaEventCreate(&stop));
  DETR_CUDA_CHECK(cudaEventRecord(start, detr::gpu::stream()));
  for (int i = 0; i < reps; ++i) f();
  DETR_CUDA_CHECK(cudaEventRecord(stop, detr::gpu::stream()));
  DETR_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  DETR_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return double(ms) / reps;
}

template <class V>
void bench(const char* type) {
  const int64_t B = 2, H = 8, D = 32, L = 4, P = 4, S = 64 * 64 + 32 * 32 + 16 * 16 + 8 * 8;
  auto shapes = detr::Tensor<int64_t>::from({L, 2}, {64, 64, 32, 32, 16, 16, 8, 8});
  auto starts = detr::Tensor<int64_t>::from({L}, {0, 4096, 5120, 5376});
  detr::Rng rng(0);
  for (int64_t Q : {S, int64_t(300)}) {
    auto value = upload<V>(rng.normal_tensor<float>({B, S, H, D}));
    auto loc = upload<V>(rng.uniform_tensor<float>({B, Q, H, L, P, 2}, 0, 1));
    auto attn = upload<V>(rng.uniform_tensor<float>({B, Q, H, L, P}, 0, 1));
    auto grad_out = upload<V>(rng.normal_tensor<float>({B, Q, H * D}));
    auto out = detr::Tensor<V, detr::cuda>::empty({B, Q, H * D});
    detr::kernels::MSDAGrads<V> g{detr::Tensor<V, detr::cuda>::empty(value.shape()),
                                  detr::Tensor<V, detr::cuda>::empty(loc.shape()),
                                  detr::Tensor<V, detr::cuda>::empty(attn.shape())};
    detr::kernels::MSDAWorkspace ws;
    const double in_bytes = double(sizeof(V)) * (value.numel() + loc.numel() + attn.numel());
    const double fwd = time_ms([&] { detr::kernels::ms_deform_attn_forward(value, shapes, starts, loc, attn, out); });
    const double fwd_bytes = in_bytes + double(sizeof(V)) * out.numel();
    const double bwd_bytes = 2 * in_bytes + double(sizeof(V)) * grad_out.numel();
    std::printf("msda cuda %-8s %s: forward %.3f ms (%.0f GB/s)", type, Q == S ? "encoder" : "decoder", fwd,
                fwd_bytes / fwd / 1e6);
    for (auto mode : {detr::kernels::MSDABackward::atomic, detr::kernels::MSDABackward::deterministic}) {
      const double bwd = time_ms([&] {
        detr::kernels::ms_deform_attn_backward(value, shapes, starts, loc, attn, grad_out, g, mode, ws);
      });
      std::printf(", backward %s %.3f ms (%.0f GB/s)",
                  mode == detr::kernels::MSDABackward::atomic ? "atomic" : "deterministic", bwd, bwd_bytes / bwd / 1e6);
    }
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (detr::gpu::device_count() == 0) {
    std::puts("no CUDA device: skipped");
    return 77;
  }
  if (argc > 1 && std::string(argv[1]) == "--bench") {
    bench<float>("float");
    bench<__nv_bfloat16>("bfloat16");
    return 0;
  }
  const Case encoder{"encoder", 2, 4, 32, 0, 4, {12, 10, 6, 5, 3, 3}};
  Case enc = encoder;
  enc.Q = 120 + 30 + 9;  // every position queries
  const Case decoder{"decoder", 2, 3, 40, 17, 3, {9, 7, 4, 4}};  // D = 40: a partial second warp pass
  for (const Case& c : {enc, decoder}) {
    run_case<float>(c, "float", 1e-4, 1e-5);
    // Inputs are rounded to the storage type on both sides; outputs round once more.
    run_case<__half>(c, "half", 1e-2, 1e-2);
    run_case<__nv_bfloat16>(c, "bfloat16", 4e-2, 4e-2);
  }
  std::printf("%d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
