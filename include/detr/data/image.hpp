#pragma once
// Image: an 8-bit RGB picture, decoded with stb_image (JPEG, PNG, BMP, ...; grey and grey+alpha
// become RGB, alpha is dropped) and written as PNG with stb_image_write.
//
// Why link Debian's compiled libstb (pkg-config `stb`, done by the detr::detr CMake target)
// instead of defining STB_IMAGE_IMPLEMENTATION in this header: a header-only library that
// compiled stb itself would clash (duplicate symbols) with any user translation unit that also
// defines the implementation, and would recompile ~8k lines of C in every test. Here we only
// include stb's declarations.
//
// Pixel operations that the DETR transforms need (resize like PIL's bilinear, crop, flip,
// to a normalised float tensor) live here too, next to the pixel layout they depend on.
#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "detr/core/error.hpp"
#include "detr/core/tensor.hpp"

namespace detr {

struct Image {
  Tensor<uint8_t> pixels;  // [H, W, 3] RGB, row-major

  int64_t height() const { return pixels.dim(0); }
  int64_t width() const { return pixels.dim(1); }
  static Image filled(int64_t height, int64_t width, std::array<uint8_t, 3> rgb = {0, 0, 0}) {
    DETR_CHECK(height > 0 && width > 0, "Image: size " << height << " x " << width
                                                       << " must be positive");
    Image im{Tensor<uint8_t>::empty({height, width, 3})};
    uint8_t* p = im.pixels.data();
    for (int64_t i = 0; i < height * width; ++i)
      for (int c = 0; c < 3; ++c) p[i * 3 + c] = rgb[c];
    return im;
  }
  uint8_t* at(int64_t y, int64_t x) { return pixels.data() + (y * width() + x) * 3; }
  const uint8_t* at(int64_t y, int64_t x) const { return pixels.data() + (y * width() + x) * 3; }
};

// Decode an encoded image held in memory; `name` (a file name) goes into the error message.
inline Image decode_image(const uint8_t* bytes, size_t size, const std::string& name) {
  DETR_CHECK(size > 0, "decode_image: " << name << " is empty (0 bytes)");
  DETR_CHECK(size <= size_t(INT32_MAX), "decode_image: " << name << " is larger than 2 GiB");
  int w = 0, h = 0, channels_in_file = 0;
  uint8_t* p = stbi_load_from_memory(bytes, int(size), &w, &h, &channels_in_file, 3);
  DETR_CHECK(p != nullptr, "decode_image: cannot decode " << name << " ("
                                                          << stbi_failure_reason() << ")");
  Image im{Tensor<uint8_t>::empty({h, w, 3})};
  std::copy_n(p, size_t(h) * w * 3, im.pixels.data());
  stbi_image_free(p);
  return im;
}

inline std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  DETR_CHECK(f.good(), "cannot open file " << path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

inline Image read_image(const std::string& path) {
  auto bytes = read_file_bytes(path);
  return decode_image(bytes.data(), bytes.size(), path);
}

// PNG at stb's default compression; `compression` 1 is faster and larger (dataset generation).
inline void write_png(const std::string& path, const Image& im, int compression = 8) {
  DETR_CHECK(im.pixels.rank() == 3 && im.pixels.dim(2) == 3,
             "write_png: " << path << ": pixels must be [H, W, 3], got " << im.pixels.shape());
  // stb reads this global; writers on several threads all set the same value.
  stbi_write_png_compression_level = compression;
  int ok = stbi_write_png(path.c_str(), int(im.width()), int(im.height()), 3, im.pixels.data(),
                          int(im.width() * 3));
  DETR_CHECK(ok, "write_png: cannot write " << path);
}

namespace internal {
// PIL's resampling coefficients for the bilinear (triangle) filter: when shrinking, the filter
// is widened by the scale so every input pixel contributes (antialiasing), as Image.resize does.
struct ResampleTaps {
  std::vector<int> first;      // [out] first input index
  std::vector<int> count;      // [out] number of taps
  std::vector<float> weights;  // [out, max_taps]
  int max_taps = 0;
};

inline ResampleTaps resample_taps(int64_t in, int64_t out) {
  ResampleTaps t;
  double scale = double(in) / double(out);
  double filterscale = std::max(scale, 1.0);
  double support = 1.0 * filterscale;
  t.max_taps = int(std::ceil(support)) * 2 + 1;
  t.first.resize(out);
  t.count.resize(out);
  t.weights.assign(size_t(out) * t.max_taps, 0.f);
  for (int64_t o = 0; o < out; ++o) {
    double center = (double(o) + 0.5) * scale;
    int xmin = std::max(int(center - support + 0.5), 0);
    int xmax = std::min(int(center + support + 0.5), int(in)) - xmin;
    xmax = std::min(xmax, t.max_taps);
    double ww = 0;
    std::vector<double> k(xmax);
    for (int x = 0; x < xmax; ++x) {
      double arg = std::abs((x + xmin - center + 0.5) / filterscale);
      k[x] = arg < 1.0 ? 1.0 - arg : 0.0;
      ww += k[x];
    }
    for (int x = 0; x < xmax; ++x) t.weights[o * t.max_taps + x] = float(ww > 0 ? k[x] / ww : 0);
    t.first[o] = xmin;
    t.count[o] = xmax;
  }
  return t;
}
}  // namespace internal

// Resize to height x width with PIL's bilinear filter (antialiased when shrinking).
inline Image resize(const Image& im, int64_t height, int64_t width) {
  DETR_CHECK(height > 0 && width > 0, "resize: target size " << height << " x " << width
                                                             << " must be positive");
  const int64_t H = im.height(), W = im.width();
  auto tx = internal::resample_taps(W, width);
  auto ty = internal::resample_taps(H, height);
  std::vector<float> horiz(size_t(H) * width * 3);  // [H, width, 3]
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < width; ++x) {
      float acc[3] = {0, 0, 0};
      for (int k = 0; k < tx.count[x]; ++k) {
        float w = tx.weights[x * tx.max_taps + k];
        const uint8_t* p = im.at(y, tx.first[x] + k);
        for (int c = 0; c < 3; ++c) acc[c] += w * p[c];
      }
      for (int c = 0; c < 3; ++c) horiz[(y * width + x) * 3 + c] = acc[c];
    }
  Image out{Tensor<uint8_t>::empty({height, width, 3})};
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) {
        float acc = 0;
        for (int k = 0; k < ty.count[y]; ++k)
          acc += ty.weights[y * ty.max_taps + k] * horiz[((ty.first[y] + k) * width + x) * 3 + c];
        out.at(y, x)[c] = uint8_t(std::clamp(std::lround(acc), 0L, 255L));
      }
  return out;
}

// Pixels [top, top + height) x [left, left + width); parts outside the image are black
// (torchvision's F.crop pads the same way).
inline Image crop(const Image& im, int64_t top, int64_t left, int64_t height, int64_t width) {
  Image out = Image::filled(height, width);
  for (int64_t y = 0; y < height; ++y) {
    int64_t sy = top + y;
    if (sy < 0 || sy >= im.height()) continue;
    for (int64_t x = 0; x < width; ++x) {
      int64_t sx = left + x;
      if (sx < 0 || sx >= im.width()) continue;
      std::copy_n(im.at(sy, sx), 3, out.at(y, x));
    }
  }
  return out;
}

inline Image hflip(const Image& im) {
  Image out{Tensor<uint8_t>::empty(im.pixels.shape())};
  const int64_t W = im.width();
  for (int64_t y = 0; y < im.height(); ++y)
    for (int64_t x = 0; x < W; ++x) std::copy_n(im.at(y, W - 1 - x), 3, out.at(y, x));
  return out;
}

// ImageNet statistics used by every DETR-family model (T.Normalize in the reference).
inline constexpr std::array<float, 3> kImageNetMean = {0.485f, 0.456f, 0.406f};
inline constexpr std::array<float, 3> kImageNetStd = {0.229f, 0.224f, 0.225f};

// ToTensor + Normalize: [H, W, 3] uint8 -> [3, H, W] float, (x / 255 - mean) / std.
inline Tensor<float> to_normalized_tensor(const Image& im,
                                          std::array<float, 3> mean = kImageNetMean,
                                          std::array<float, 3> stddev = kImageNetStd) {
  const int64_t H = im.height(), W = im.width();
  auto t = Tensor<float>::empty({3, H, W});  // [3, H, W]
  for (int c = 0; c < 3; ++c) {
    float* dst = t.data() + c * H * W;
    for (int64_t i = 0; i < H * W; ++i)
      dst[i] = (float(im.pixels.data()[i * 3 + c]) / 255.0f - mean[c]) / stddev[c];
  }
  return t;
}

}  // namespace detr
