#pragma once
// Rng: the one seeded source of randomness (init, dropout, data augmentation). A fixed seed
// gives the same numbers on every platform: we use mt19937_64 and our own distributions
// (std:: distributions are implementation-defined).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <vector>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "detr/core/parallel.hpp"
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

// Counter-based dropout: element i of a mask seeded by `base` is dropped where
// splitmix64(base + i) < threshold (threshold = p * 2^64), kept and scaled by 1 / (1 - p)
// otherwise. The same base reproduces the mask. Vectorised on AVX-512 (16 hashes per step,
// the same bits as the scalar hash).
#if defined(__AVX512F__) && defined(__AVX512DQ__)
// Keep-bits of elements [first, first + 16). (GCC vector arithmetic: with AVX512DQ the 64-bit
// multiplies are single vpmullq instructions.)
inline __mmask16 dropout_keep16(uint64_t first, uint64_t threshold) {
  using u64x8 = uint64_t __attribute__((vector_size(64)));
  const u64x8 lanes = {0, 1, 2, 3, 4, 5, 6, 7};
  const __m512i thr = _mm512_set1_epi64(int64_t(threshold));
  auto kept8 = [&](uint64_t f) {
    u64x8 z = f + lanes + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z = z ^ (z >> 31);
    return unsigned(_mm512_cmpge_epu64_mask(__m512i(z), thr));
  };
  return __mmask16(kept8(first) | (kept8(first + 8) << 8));
}
#endif

// bits[w] bit j = whether element 16 w + j of [0, n) is kept; ceil(n / 16) words.
inline void dropout_keep_bits(uint64_t base, uint64_t threshold, int64_t n, uint16_t* bits) {
  int64_t i = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  for (; i + 16 <= n; i += 16) bits[i / 16] = dropout_keep16(base + uint64_t(i), threshold);
#endif
  for (; i < n; i += 16) {
    uint16_t w = 0;
    for (int64_t j = 0; j < 16 && i + j < n; ++j)
      w |= uint16_t(splitmix64(base + uint64_t(i + j)) >= threshold) << j;
    bits[i / 16] = w;
  }
}

// y[i] = x[i] * keep_scale where bits keep element i, else 0 (x and y may be the same).
template <class T>
void apply_keep_bits(const uint16_t* bits, T keep_scale, const T* x, T* y, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    const __m512 keep = _mm512_set1_ps(keep_scale);
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(y + i, _mm512_maskz_mul_ps(__mmask16(bits[i / 16]), _mm512_loadu_ps(x + i), keep));
  }
#endif
  for (; i < n; ++i) y[i] = (bits[i / 16] >> (i % 16)) & 1 ? x[i] * keep_scale : T(0);
}

// The hash threshold below which an element is dropped: p * 2^64.
inline uint64_t dropout_threshold(double p) { return uint64_t(p * 18446744073709551616.0); }

// The mask as a per-element rule, for kernels that fuse dropout into another pass (the CUDA
// backend's linear epilogue): the same keep decision and scale as dropout_keep_bits / apply_keep_bits.
template <class T>
struct DropoutMask {
  uint64_t seed = 0, threshold = 0;
  T keep_scale = T(1);
  bool active = false;
  DETR_HD T apply(int64_t i, T v) const {
    if (!active) return v;
    return splitmix64(seed + uint64_t(i)) >= threshold ? v * keep_scale : T(0);
  }
};

// y = dropout(x) for elements [0, n) of the mask seeded by `seed` (x and y may be the same), in
// parallel chunks. The keep-bits go to `bits` (ceil(n / 16) words) when the caller keeps them
// for a backward, else to a small buffer per chunk.
template <class T>
void dropout_apply(uint64_t seed, double p, const T* x, T* y, int64_t n, uint16_t* bits = nullptr) {
  const uint64_t threshold = dropout_threshold(p);
  const T keep_scale = T(1.0 / (1.0 - p));
  constexpr int64_t chunk = 1 << 14;  // a multiple of 16: chunks own whole words
  parallel_for((n + chunk - 1) / chunk, 4, [&](int64_t c0, int64_t c1) {
    for (int64_t i = c0 * chunk; i < std::min(n, c1 * chunk); i += chunk) {
      uint16_t local[chunk / 16];
      uint16_t* b = bits ? bits + i / 16 : local;
      const int64_t len = std::min(chunk, n - i);
      dropout_keep_bits(seed + uint64_t(i), threshold, len, b);
      apply_keep_bits(b, keep_scale, x + i, y + i, len);
    }
  });
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

  // The whole generator state as numbers (mt19937_64's words and position, then the cached
  // normal), for checkpoints: set_state(state()) continues the stream exactly.
  std::vector<uint64_t> state() const {
    std::ostringstream os;
    os << gen_;
    std::istringstream is(os.str());
    std::vector<uint64_t> words;
    for (uint64_t w; is >> w;) words.push_back(w);
    words.push_back(has_spare_ ? 1 : 0);
    words.push_back(std::bit_cast<uint64_t>(spare_));
    return words;
  }
  // False (and the generator unchanged) when `words` is not a state() of this generator type.
  bool set_state(const std::vector<uint64_t>& words) {
    if (words.size() < 3) return false;
    std::ostringstream os;
    for (size_t i = 0; i + 2 < words.size(); ++i) os << (i ? " " : "") << words[i];
    std::istringstream is(os.str());
    std::mt19937_64 gen;
    if (!(is >> gen)) return false;
    gen_ = gen;
    has_spare_ = words[words.size() - 2] != 0;
    spare_ = std::bit_cast<double>(words.back());
    return true;
  }

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
