#pragma once
// The thread pool every op runs its parallel loops on.
//
//   parallel_for(n, grain, [&](int64_t i0, int64_t i1) { ... });  // [0, n) in chunks
//   parallel_chunks(k, [&](int64_t c) { ... });                   // k chunks, one call each
//   set_num_threads(2); num_threads();                            // threads a loop may use
//
// Why not OpenMP: its teams end every region in a barrier that waits for every thread of the
// team. When other processes take a core, a team thread that was descheduled holds up the
// whole region until the scheduler runs it again (with spinning waiters, attention took 28x
// its quiet time under load). Here the calling thread works too, each thread starts on its
// own contiguous share of the chunks (a static schedule's, for cache locality) and then steals
// from the back of the others' shares, one chunk at a time: a helper that is not running
// delays nothing it has not claimed, and the caller waits only for chunks already claimed.
// Helpers spin briefly for the next loop (loops come microseconds apart in a training step)
// and then sleep.
//
// Chunk boundaries depend on the loop's size and grain only, never on the thread count, so an
// op that combines per-chunk partial results in chunk order gives the same bits on any number
// of threads. A loop started inside a chunk (or while another thread is using the pool) runs
// serially on its caller.
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "detr/core/error.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace detr {

namespace internal {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// Threads by default: DETR_NUM_THREADS, else OMP_NUM_THREADS (what users of OpenMP code set),
// else the cores this process may run on.
inline int default_num_threads() {
  for (const char* var : {"DETR_NUM_THREADS", "OMP_NUM_THREADS"})
    if (const char* s = std::getenv(var)) {
      const int n = std::atoi(s);
      if (n > 0) return n;
    }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return int(std::max(1u, std::thread::hardware_concurrency()));
}

// How long a thread polls (for the next loop, or for the last chunk of its own) before it
// sleeps: a wake-up through the kernel costs tens of microseconds, more on a loaded machine,
// and a training step starts loops microseconds apart; but a thread that polls takes the
// core from whoever else could run. DETR_SPIN_US overrides the default of 100 us.
inline std::chrono::nanoseconds spin_time() {
  static const std::chrono::nanoseconds t = [] {
    const char* s = std::getenv("DETR_SPIN_US");
    return std::chrono::microseconds(s ? std::max(0, std::atoi(s)) : 100);
  }();
  return t;
}

// Polls `ready` for up to spin_time(); true as soon as it holds.
template <class Ready>
bool spin_until(Ready ready) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 1;; ++i) {
    if (ready()) return true;
    cpu_relax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() - t0 > spin_time()) return ready();
  }
}

// True on a thread that is running a chunk: a nested loop runs serially there.
inline thread_local bool t_in_parallel = false;

class ThreadPool {
 public:
  static ThreadPool& instance() {
    static ThreadPool pool;
    return pool;
  }

  int num_threads() const { return threads_.load(std::memory_order_relaxed); }
  void set_num_threads(int n) {
    n = std::clamp(n, 1, kMaxThreads);
    std::lock_guard<std::mutex> busy(busy_);  // not while a loop runs
    stop_helpers();
    threads_.store(n, std::memory_order_relaxed);
  }

  // Runs call(ctx, c) for every c in [0, chunks), on the caller and the helpers.
  void run(int64_t chunks, void (*call)(void*, int64_t), void* ctx) {
    if (chunks <= 0) return;
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    const int threads = num_threads();
    if (chunks == 1 || t_in_parallel || threads == 1 || !busy.owns_lock()) {
      run_serially(chunks, call, ctx);
      return;
    }
    DETR_CHECK(chunks < kMaxChunks, "parallel loop: " << chunks << " chunks, at most " << kMaxChunks - 1);
    start_helpers();
    call_.store(call, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    chunks_.store(chunks, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    // Thread k owns chunks [chunks * k / threads, chunks * (k + 1) / threads), as a static
    // schedule would give it (the data it touched in the last loop is likely in its cache).
    const uint64_t gen = (gen_.load(std::memory_order_relaxed) + 1) & kGenMask;
    for (int k = 0; k < threads; ++k)
      slots_[k].range.store(pack(gen, uint64_t(chunks * k / threads), uint64_t(chunks * (k + 1) / threads)),
                            std::memory_order_relaxed);
    gen_.store(gen, std::memory_order_release);
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) epoch_.notify_all();

    work(gen, 0);
    // Wait for the chunks that helpers claimed: spin, then sleep until the last one is done.
    spin_until([&] { return done_.load(std::memory_order_acquire) >= chunks; });
    int64_t done = done_.load(std::memory_order_acquire);
    while (done < chunks) {
      caller_waiting_.store(true, std::memory_order_seq_cst);
      done_.wait(done, std::memory_order_acquire);
      done = done_.load(std::memory_order_acquire);
    }
    caller_waiting_.store(false, std::memory_order_relaxed);
    if (error_) std::rethrow_exception(error_);
  }

  ~ThreadPool() { stop_helpers(); }

 private:
  static constexpr int kMaxThreads = 256;
  // A slot's range word: generation (20 bits), front and back chunk (22 bits each).
  static constexpr uint64_t kGenMask = (uint64_t(1) << 20) - 1;
  static constexpr int64_t kMaxChunks = int64_t(1) << 22;
  static uint64_t pack(uint64_t gen, uint64_t front, uint64_t back) { return gen << 44 | front << 22 | back; }
  static uint64_t gen_of(uint64_t w) { return w >> 44; }
  static int64_t front_of(uint64_t w) { return int64_t((w >> 22) & (kMaxChunks - 1)); }
  static int64_t back_of(uint64_t w) { return int64_t(w & (kMaxChunks - 1)); }

  ThreadPool() : threads_(std::min(default_num_threads(), kMaxThreads)) {}

  static void run_serially(int64_t chunks, void (*call)(void*, int64_t), void* ctx) {
    const bool outer = t_in_parallel;
    t_in_parallel = true;
    try {
      for (int64_t c = 0; c < chunks; ++c) call(ctx, c);
    } catch (...) {
      t_in_parallel = outer;
      throw;
    }
    t_in_parallel = outer;
  }

  // Claims a chunk of generation `gen` from slot k: its front for the owner, its back for a
  // thief (so that the owner keeps walking its range in order). -1 when the slot is empty.
  int64_t claim(int k, uint64_t gen, bool owner) {
    std::atomic<uint64_t>& range = slots_[k].range;
    uint64_t w = range.load(std::memory_order_acquire);
    for (;;) {
      const int64_t front = front_of(w), back = back_of(w);
      if (gen_of(w) != gen || front >= back) return -1;
      const uint64_t next = owner ? pack(gen, uint64_t(front + 1), uint64_t(back)) : pack(gen, uint64_t(front), uint64_t(back - 1));
      if (range.compare_exchange_weak(w, next, std::memory_order_acq_rel, std::memory_order_acquire))
        return owner ? front : back - 1;
    }
  }

  // Thread `self` runs its own chunks of generation `gen`, then steals until none is left.
  // The job's fields were written before its generation was published and cannot change
  // before every chunk is done, so they are valid whenever a claim succeeds.
  void work(uint64_t gen, int self) {
    t_in_parallel = true;
    const int threads = num_threads();
    for (int i = 0; i < threads; ++i) {
      const int k = (self + i) % threads;
      for (int64_t c; (c = claim(k, gen, i == 0)) >= 0;) {
        try {
          call_.load(std::memory_order_relaxed)(ctx_.load(std::memory_order_relaxed), c);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex_);
          if (!error_) error_ = std::current_exception();
        }
        if (done_.fetch_add(1, std::memory_order_seq_cst) + 1 == chunks_.load(std::memory_order_relaxed) &&
            caller_waiting_.load(std::memory_order_seq_cst))
          done_.notify_one();
      }
    }
    t_in_parallel = false;
  }

  // `seen`: the epoch when the helper was made (read by its creator: a thread that starts late
  // must still see the jobs and the stop published after it was made).
  void helper_loop(int self, uint32_t seen) {
    for (;;) {
      spin_until([&] { return epoch_.load(std::memory_order_acquire) != seen; });
      uint32_t now = epoch_.load(std::memory_order_acquire);
      if (now == seen) {
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        while ((now = epoch_.load(std::memory_order_seq_cst)) == seen) epoch_.wait(seen, std::memory_order_acquire);
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
      }
      seen = now;
      if (stop_.load(std::memory_order_acquire)) return;
      work(gen_.load(std::memory_order_acquire), self);
    }
  }

  void start_helpers() {
    const int want = num_threads() - 1;
    if (int(helpers_.size()) == want) return;
    stop_helpers();
    stop_.store(false, std::memory_order_relaxed);
    const uint32_t epoch = epoch_.load(std::memory_order_acquire);
    for (int i = 0; i < want; ++i) helpers_.emplace_back([this, i, epoch] { helper_loop(i + 1, epoch); });
  }

  void stop_helpers() {
    if (helpers_.empty()) return;
    stop_.store(true, std::memory_order_release);
    epoch_.fetch_add(1, std::memory_order_release);
    epoch_.notify_all();
    for (auto& t : helpers_) t.join();
    helpers_.clear();
  }

  struct alignas(64) Slot {
    std::atomic<uint64_t> range{0};
  };

  std::atomic<int> threads_;
  std::vector<std::thread> helpers_;
  std::mutex busy_;  // one loop at a time; others run serially
  // The job: its generation, each thread's range of chunks, the function and the count done.
  std::atomic<uint64_t> gen_{0};
  std::unique_ptr<Slot[]> slots_{new Slot[kMaxThreads]};
  std::atomic<void (*)(void*, int64_t)> call_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<int64_t> chunks_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<bool> caller_waiting_{false};
  std::exception_ptr error_;
  std::mutex error_mutex_;
  // Helpers sleep on the epoch, which changes with every job and at shutdown.
  std::atomic<uint32_t> epoch_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace internal

// The number of threads a parallel loop may use (the caller included).
inline int num_threads() { return internal::ThreadPool::instance().num_threads(); }
inline void set_num_threads(int n) { internal::ThreadPool::instance().set_num_threads(n); }
// True inside a chunk of a parallel loop.
inline bool in_parallel() { return internal::t_in_parallel; }

// Calls body(c) once for every chunk c in [0, chunks), spread over the pool's threads.
template <class F>
void parallel_chunks(int64_t chunks, F&& body) {
  using Body = std::remove_reference_t<F>;
  internal::ThreadPool::instance().run(
      chunks, [](void* ctx, int64_t c) { (*static_cast<Body*>(ctx))(c); },
      const_cast<void*>(static_cast<const void*>(&body)));
}

// Calls body(i0, i1) on consecutive ranges covering [0, n), each at least `grain` long (but
// the last), at most 64 ranges: enough for the threads to balance a loop whose chunks differ
// in cost or whose threads are not all running. Ranges depend on n and grain only.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks = std::clamp<int64_t>(n / grain, 1, 64);
  if (chunks == 1) {
    body(int64_t(0), n);
    return;
  }
  parallel_chunks(chunks, [&](int64_t c) { body(c * n / chunks, (c + 1) * n / chunks); });
}

// parallel_for in chunks of one index at least when `parallel` (the caller's judgement that
// the loop has enough work for threads), else the whole range on the calling thread.
template <class F>
void parallel_for_if(bool parallel, int64_t n, F&& body) {
  if (parallel) parallel_for(n, 1, body);
  else if (n > 0) body(int64_t(0), n);
}

// body(i) for every i in [0, n), vectorised, in parallel when `parallel`. Give it a lambda that
// captures by value ([=]): it is copied into each chunk, so its captures are locals the loop
// keeps in registers (read through a reference, a scalar made the loop stay scalar).
template <class F>
void parallel_for_simd(bool parallel, int64_t n, const F& body) {
  parallel_for_if(parallel, n, [&body](int64_t i0, int64_t i1) {
    const F local = body;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) local(i);
  });
}

}  // namespace detr
