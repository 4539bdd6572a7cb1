#pragma once
// Rng: the one seeded source of randomness (init, dropout, data augmentation). A fixed seed
// gives the same numbers on every platform: we use mt19937_64 and our own distributions
// (std:: distributions are implementation-defined).
#include <cmath>
#include <cstdint>
#include <random>

#include "detr/core/tensor.hpp"

namespace detr {

namespace internal {
// A stateless 64-bit mix (SplitMix64's finaliser): hash(seed + i) gives independent
// per-element random bits, generated in any order and in parallel.
constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace internal

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : gen_(seed) {}
  uint64_t next_u64() { return gen_(); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return double(gen_() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Integer in [lo, hi] inclusive.
  int64_t randint(int64_t lo, int64_t hi) {
    return lo + int64_t(gen_() % uint64_t(hi - lo + 1));
  }
  // Standard normal (Box-Muller; the spare value is cached).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform(), u2 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * M_PI * u2);
  }
  bool bernoulli(double p) { return uniform() < p; }

  template <class T>
  Tensor<T> uniform_tensor(const Shape& s, double lo, double hi) {
    auto t = Tensor<T>::empty(s);
    for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = T(uniform(lo, hi));
    return t;
  }
  template <class T>
  Tensor<T> normal_tensor(const Shape& s, double mean = 0.0, double stddev = 1.0) {
    auto t = Tensor<T>::empty(s);
    for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = T(mean + stddev * normal());
    return t;
  }

 private:
  std::mt19937_64 gen_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace detr
