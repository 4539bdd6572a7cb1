#pragma once
// DataLoader: batches of a dataset, shuffled per epoch from a seed, prepared on background
// threads while the model trains on the previous batch (the reference's DataLoader with
// num_workers and collate_fn).
//
// Reproducibility does not depend on threads: the epoch's order comes from
// Rng(mix_seed(seed, epoch)), and sample i of epoch e is transformed with its own
// Rng(mix_seed(seed, e, i)); workers may finish in any order, next() hands batches out in order.
// A worker's exception (a corrupt image, a bad annotation) is rethrown by next() for the batch
// that needed the sample.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>
#include <thread>
#include <vector>

#include "detr/core/error.hpp"
#include "detr/core/rng.hpp"
#include "detr/data/batch.hpp"
#include "detr/data/seed.hpp"
#include "detr/data/target.hpp"

namespace detr {

// Anything indexable that yields Samples: CocoDataset, or a user's in-memory set.
template <class D>
concept SampleDataset = requires(const D& d, int64_t i) {
  { d.size() } -> std::convertible_to<int64_t>;
  { d.get(i) } -> std::convertible_to<Sample>;
};

struct LoaderOptions {
  int64_t batch_size = 2;
  bool shuffle = true;
  bool drop_last = false;  // drop a last batch smaller than batch_size
  uint64_t seed = 0;
  int num_workers = 2;     // background threads; 0 prepares batches in next()
  int prefetch = 4;        // batches prepared ahead of the consumer
};

template <SampleDataset Dataset>
class DataLoader {
 public:
  using SampleTransform = std::function<TensorSample(const Sample&, Rng&)>;

  // The dataset must outlive the loader.
  DataLoader(const Dataset& dataset, SampleTransform transform, LoaderOptions options = {})
      : dataset_(&dataset), transform_(std::move(transform)), opt_(options) {
    DETR_CHECK(opt_.batch_size > 0, "DataLoader: batch_size must be positive, got "
                                        << opt_.batch_size);
    DETR_CHECK(opt_.num_workers >= 0 && opt_.prefetch >= 1,
               "DataLoader: need num_workers >= 0 and prefetch >= 1, got " << opt_.num_workers
                                                                          << ", " << opt_.prefetch);
  }
  ~DataLoader() { stop(); }
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t num_batches() const {
    const int64_t n = dataset_->size();
    return opt_.drop_last ? n / opt_.batch_size : (n + opt_.batch_size - 1) / opt_.batch_size;
  }

  // Dataset indices of an epoch, in the order batches take them.
  std::vector<int64_t> epoch_order(int64_t epoch) const {
    std::vector<int64_t> order(size_t(dataset_->size()));
    std::iota(order.begin(), order.end(), 0);
    if (opt_.shuffle) {  // Fisher-Yates with our own Rng: the same on every platform
      Rng rng(internal::mix_seed(opt_.seed, uint64_t(epoch), ~0ULL));
      for (int64_t i = int64_t(order.size()) - 1; i > 0; --i)
        std::swap(order[size_t(i)], order[size_t(rng.randint(0, i))]);
    }
    return order;
  }

  // Begin an epoch; workers start preparing its first batches.
  void start_epoch(int64_t epoch) {
    stop();
    epoch_ = epoch;
    order_ = epoch_order(epoch);
    next_to_take_ = 0;
    next_to_give_ = 0;
    ready_.clear();
    stopping_ = false;
    started_ = true;
    for (int w = 0; w < opt_.num_workers; ++w) workers_.emplace_back([this] { work(); });
  }

  // The next batch of the epoch, or nothing at its end.
  std::optional<Batch> next() {
    DETR_CHECK(started_, "DataLoader::next: call start_epoch(epoch) first");
    if (next_to_give_ >= num_batches()) return std::nullopt;
    const int64_t b = next_to_give_++;
    if (opt_.num_workers == 0) return make_batch(b);
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return ready_.count(b) > 0; });
    Slot slot = std::move(ready_[b]);
    ready_.erase(b);
    cv_.notify_all();  // room for one more prefetched batch
    lock.unlock();
    if (slot.error) std::rethrow_exception(slot.error);
    return std::move(slot.batch);
  }

 private:
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };

  Batch make_batch(int64_t b) const {
    const int64_t begin = b * opt_.batch_size;
    const int64_t end = std::min<int64_t>(begin + opt_.batch_size, int64_t(order_.size()));
    std::vector<TensorSample> samples;
    for (int64_t k = begin; k < end; ++k) {
      const int64_t index = order_[size_t(k)];
      Rng rng(internal::mix_seed(opt_.seed, uint64_t(epoch_), uint64_t(index)));
      samples.push_back(transform_(dataset_->get(index), rng));
    }
    return collate(samples);
  }

  void work() {
    for (;;) {
      int64_t b;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] {
          return stopping_ || next_to_take_ >= num_batches() ||
                 next_to_take_ < next_to_give_ + opt_.prefetch;
        });
        if (stopping_ || next_to_take_ >= num_batches()) return;
        b = next_to_take_++;
      }
      Slot slot;
      try {
        slot.batch = make_batch(b);
      } catch (...) {
        slot.error = std::current_exception();
      }
      std::lock_guard lock(mu_);
      ready_[b] = std::move(slot);
      cv_.notify_all();
    }
  }

  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  const Dataset* dataset_;
  SampleTransform transform_;
  LoaderOptions opt_;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  std::map<int64_t, Slot> ready_;  // batch number -> prepared batch
  int64_t next_to_take_ = 0;       // next batch number a worker will prepare
  std::atomic<int64_t> next_to_give_ = 0;  // next batch number next() returns
  bool stopping_ = false;
  bool started_ = false;
};

}  // namespace detr
