#pragma once
// Shared test helpers: random inputs, closeness checks, and the gradcheck assertion.
#include <catch2/catch.hpp>
#include <cstring>
#include <string>

#include "detr/autograd/gradcheck.hpp"

namespace detr::test {

inline Tensor<double> randn(const Shape& s, uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  return rng.normal_tensor<double>(s, 0.0, scale);
}

inline Tensor<double> rand_uniform(const Shape& s, uint64_t seed, double lo, double hi) {
  Rng rng(seed);
  return rng.uniform_tensor<double>(s, lo, hi);
}

// Same shape and the same bytes (a fused op against the ops it replaces, a reloaded checkpoint).
template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(T) * size_t(a.numel())) == 0;
}

// max |a - b| <= atol + rtol * |b| element-wise; the message names the worst element.
template <class T, class U>
bool allclose(const Tensor<T>& a, const Tensor<U>& b, double rtol, double atol, std::string* why = nullptr) {
  if (!(a.shape() == b.shape())) {
    if (why) *why = "shape " + a.shape().str() + " vs " + b.shape().str();
    return false;
  }
  double worst = 0;
  int64_t at = -1;
  for (int64_t i = 0; i < a.numel(); ++i) {
    double x = double(a.data()[i]), y = double(b.data()[i]);
    double excess = std::abs(x - y) - (atol + rtol * std::abs(y));
    if (!(excess <= 0) && (at < 0 || excess > worst || std::isnan(excess))) {
      worst = std::isnan(excess) ? INFINITY : excess;
      at = i;
    }
  }
  if (at >= 0 && why)
    *why = "element " + std::to_string(at) + ": " + std::to_string(double(a.data()[at])) +
           " vs " + std::to_string(double(b.data()[at]));
  return at < 0;
}

}  // namespace detr::test

#define REQUIRE_GRADCHECK(...)            \
  do {                                    \
    auto detr_gc_ = ::detr::gradcheck(__VA_ARGS__); \
    INFO(detr_gc_.message);               \
    REQUIRE(detr_gc_.ok);                 \
  } while (0)

#define REQUIRE_ALLCLOSE(a, b, rtol, atol)                      \
  do {                                                          \
    std::string detr_why_;                                      \
    bool detr_ok_ = ::detr::test::allclose((a), (b), (rtol), (atol), &detr_why_); \
    INFO(#a " vs " #b ": " << detr_why_);                       \
    REQUIRE(detr_ok_);                                          \
  } while (0)
