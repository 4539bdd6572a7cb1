#pragma once
// Host memory for tensors: 64-byte aligned, and large blocks are cached for reuse instead of
// being returned to the system. A training step allocates the same few hundred large buffers
// every iteration; served by malloc, each one is a fresh mmap whose pages fault in one by one
// (about 8% of a DETR step was page faults and zeroing). The cache keeps freed blocks by size
// class (a power of two split into 8 steps, so at most 12.5% slack) up to a byte limit.
//   DETR_HOST_CACHE_MB   cache limit in MiB (default 4096; 0 disables caching). Under
//   AddressSanitizer the default is 0, so that a use after free is still caught.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace detr {

namespace internal {

class HostCache {
 public:
  static constexpr size_t kMinCached = size_t(64) << 10;  // smaller blocks: malloc's own bins

  static HostCache& instance() {
    static HostCache* cache = new HostCache();  // never destroyed: tensors may outlive statics
    return *cache;
  }

  void* allocate(size_t bytes) {
    bytes = std::max<size_t>(64, (bytes + 63) / 64 * 64);
    if (bytes < kMinCached) return checked(std::aligned_alloc(64, bytes));
    const size_t cls = size_class(bytes);
    {
      std::lock_guard lock(mutex_);
      auto it = free_.find(cls);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= cls;
        return p;
      }
    }
    return checked(std::aligned_alloc(64, cls));
  }

  void deallocate(void* p, size_t bytes) {
    bytes = std::max<size_t>(64, (bytes + 63) / 64 * 64);
    if (bytes < kMinCached) return std::free(p);
    const size_t cls = size_class(bytes);
    {
      std::lock_guard lock(mutex_);
      if (cached_bytes_ + cls <= limit_) {
        free_[cls].push_back(p);
        cached_bytes_ += cls;
        return;
      }
    }
    std::free(p);
  }

  // Returns every cached block to the system.
  void release() {
    std::lock_guard lock(mutex_);
    for (auto& [cls, blocks] : free_)
      for (void* p : blocks) std::free(p);
    free_.clear();
    cached_bytes_ = 0;
  }

  // The most bytes kept cached; lowering it does not release what is cached already.
  size_t limit() const {
    std::lock_guard lock(mutex_);
    return limit_;
  }
  void set_limit(size_t bytes) {
    std::lock_guard lock(mutex_);
    limit_ = bytes;
  }

  size_t cached_bytes() const {
    std::lock_guard lock(mutex_);
    return cached_bytes_;
  }

  // Bytes actually allocated for a request of `bytes` (cached blocks are rounded up to a class).
  static size_t size_class(size_t bytes) {
    if (bytes < kMinCached) return bytes;
    size_t top = size_t(1) << (63 - __builtin_clzll(bytes));  // largest power of two <= bytes
    size_t step = top / 8;
    return (bytes + step - 1) / step * step;
  }

 private:
  HostCache() {
#if defined(__SANITIZE_ADDRESS__)
    constexpr size_t kDefaultMB = 0;
#else
    constexpr size_t kDefaultMB = 4096;
#endif
    const char* env = std::getenv("DETR_HOST_CACHE_MB");
    limit_ = (env ? size_t(std::strtoull(env, nullptr, 10)) : kDefaultMB) << 20;
  }
  static void* checked(void* p) {
    if (!p) throw std::bad_alloc();
    return p;
  }

  mutable std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_bytes_ = 0, limit_ = 0;
};

// A 64-byte aligned buffer that grows to the largest size asked of it; contents unspecified.
template <class T>
class ScratchBuffer {
 public:
  T* get(size_t n) {
    static_assert(std::is_trivially_copyable_v<T>, "scratch holds plain values");
    if (n > capacity_) {
      const size_t bytes = std::max<size_t>(64, (n * sizeof(T) + 63) / 64 * 64);
      data_.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
      if (!data_) throw std::bad_alloc();
      capacity_ = n;
    }
    return data_.get();
  }
  const T* data() const { return data_.get(); }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T[], Free> data_;
  size_t capacity_ = 0;
};

// Grow-only scratch memory of the calling thread, one buffer per (Tag, Slot): kernels that need
// a few MB of per-thread workspace on every call (a fresh vector each time was a new mmap and
// hundreds of page faults per call and thread). Contents are unspecified on return.
template <class Tag, int Slot, class T>
T* thread_scratch(size_t n) {
  thread_local ScratchBuffer<T> buffer;
  return buffer.get(n);
}

}  // namespace internal

// Frees the tensor memory cached for reuse (e.g. between training and a memory-hungry phase).
inline void release_cached_host_memory() { internal::HostCache::instance().release(); }
inline size_t cached_host_memory_bytes() { return internal::HostCache::instance().cached_bytes(); }

}  // namespace detr
