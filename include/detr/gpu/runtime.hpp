#pragma once
// The CUDA runtime as DETR++ uses it, declared for any host compiler; defined in the compiled
// backend (src/cuda/runtime.cu, CMake target detr::cuda). All device work of a process goes to
// one stream in submission order, so memory freed by one op can be handed to the next without a
// synchronisation: the allocator is stream-ordered (CUDA's memory pool, kept cached). The host
// waits only when it reads device memory (copy_to_host, Tensor<T, cuda>::item) or synchronize().
#include <cstddef>
#include <cstdint>

namespace detr::gpu {

// Visible CUDA devices; 0 when there is no driver or no GPU (never throws).
int device_count() noexcept;
// Throws detr::Error naming `what` when no device is visible.
void require_device(const char* what);

// Stream-ordered device memory. allocate(0) returns nullptr.
void* allocate(size_t bytes);
void deallocate(void* p, size_t bytes) noexcept;

// Copies on the stream. copy_to_host returns once the bytes are on the host.
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void copy_on_device(void* dst, const void* src, size_t bytes);
void fill_bytes_zero(void* dst, size_t bytes);
// Waits for all work submitted so far; reports an asynchronous kernel failure as detr::Error.
void synchronize();

// Bytes held by live tensors now and at most since the last reset (what peak-memory reports use).
struct MemoryStats {
  size_t in_use = 0, peak = 0;
};
MemoryStats memory_stats();
void reset_peak_memory();

// Page-locked host memory, for batches that are copied to the device every step.
void* allocate_pinned(size_t bytes);
void deallocate_pinned(void* p) noexcept;

}  // namespace detr::gpu
