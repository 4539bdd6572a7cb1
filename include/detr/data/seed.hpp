#pragma once
// Derived seeds: one independent random stream per (seed, a, b), e.g. per (epoch, sample) in
// the loader or per (split, canvas) in FashionDet, so results never depend on thread count.
#include <cstdint>

namespace detr::internal {

inline uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b) {
  // splitmix64's finaliser over the three inputs.
  uint64_t z = seed ^ (a * 0x9E3779B97F4A7C15ULL) ^ (b * 0xD1B54A32D192ED03ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace detr::internal
