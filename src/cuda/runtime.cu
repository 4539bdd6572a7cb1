// detr/gpu/runtime.hpp: the stream, the stream-ordered allocator (CUDA's default memory pool with
// its release threshold raised, so freed blocks stay cached for the next op instead of going back
// to the driver), copies and memory statistics.
#include <atomic>
#include <cstdint>
#include <limits>
#include <mutex>

#include "detr/gpu/cuda_check.cuh"
#include "detr/gpu/runtime.hpp"

namespace detr::gpu {

namespace {
struct Context {
  cudaStream_t stream = nullptr;
  Context() {
    require_device("the CUDA backend");
    DETR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    int device = 0;
    DETR_CUDA_CHECK(cudaGetDevice(&device));
    cudaMemPool_t pool;
    DETR_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    uint64_t keep = std::numeric_limits<uint64_t>::max();
    DETR_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  }
  // The stream is left to process teardown: tensors in static storage may still free into it.
};

Context& context() {
  static Context* c = new Context();  // never destroyed, see above
  return *c;
}

std::atomic<size_t> bytes_in_use{0}, bytes_peak{0};

void note_allocated(size_t bytes) {
  const size_t now = bytes_in_use.fetch_add(bytes) + bytes;
  size_t peak = bytes_peak.load();
  while (now > peak && !bytes_peak.compare_exchange_weak(peak, now)) {
  }
}
}  // namespace

cudaStream_t stream() { return context().stream; }

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the "no driver" error
    return 0;
  }
  return n;
}

void require_device(const char* what) {
  DETR_CHECK(device_count() > 0, what << " needs a CUDA device, and none is visible (no GPU, no driver, or "
                                          "CUDA_VISIBLE_DEVICES hides them)");
}

void* allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  cudaError_t err = cudaMallocAsync(&p, bytes, stream());
  if (err == cudaErrorMemoryAllocation) {
    // The pool holds cached blocks of other sizes: give them back to the driver once and retry.
    (void)cudaGetLastError();
    DETR_CUDA_CHECK(cudaStreamSynchronize(stream()));
    int device = 0;
    cudaMemPool_t pool;
    DETR_CUDA_CHECK(cudaGetDevice(&device));
    DETR_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    DETR_CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
    err = cudaMallocAsync(&p, bytes, stream());
  }
  DETR_CHECK(err == cudaSuccess, "CUDA could not allocate " << bytes << " bytes (" << bytes_in_use.load()
                                                            << " in use by tensors): " << cudaGetErrorString(err));
  note_allocated(bytes);
  return p;
}

void deallocate(void* p, size_t bytes) noexcept {
  if (!p) return;
  bytes_in_use.fetch_sub(bytes);
  // Errors are dropped: this runs in destructors, possibly after the runtime shut down at exit.
  if (cudaFreeAsync(p, stream()) != cudaSuccess) (void)cudaGetLastError();
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes) DETR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  DETR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  DETR_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void copy_on_device(void* dst, const void* src, size_t bytes) {
  if (bytes && dst != src) DETR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}

void fill_bytes_zero(void* dst, size_t bytes) {
  if (bytes) DETR_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream()));
}

void synchronize() {
  DETR_CUDA_CHECK(cudaStreamSynchronize(stream()));
  DETR_CUDA_CHECK(cudaGetLastError());
}

MemoryStats memory_stats() { return {bytes_in_use.load(), bytes_peak.load()}; }
void reset_peak_memory() { bytes_peak.store(bytes_in_use.load()); }

void* allocate_pinned(size_t bytes) {
  void* p = nullptr;
  if (bytes) DETR_CUDA_CHECK(cudaMallocHost(&p, bytes));
  return p;
}
void deallocate_pinned(void* p) noexcept {
  if (p && cudaFreeHost(p) != cudaSuccess) (void)cudaGetLastError();
}

}  // namespace detr::gpu
