#pragma once
// Image: an 8-bit RGB picture, decoded with stb_image (JPEG, PNG, BMP, ...; grey and grey+alpha
// become RGB, alpha is dropped) and written as PNG (zlib).
//
// Why link Debian's compiled libstb (pkg-config `stb`, done by the detr::detr CMake target)
// instead of defining STB_IMAGE_IMPLEMENTATION in this header: a header-only library that
// compiled stb itself would clash (duplicate symbols) with any user translation unit that also
// defines the implementation, and would recompile ~8k lines of C in every test. Here we only
// include stb's declarations.
//
// Decoding is bounded: the size in the file's header is checked against a pixel limit BEFORE
// anything is decoded, because a JPEG of a few bytes can claim 20000 x 20000 pixels and stb
// will allocate and fill gigabytes for it (a decompression bomb; a bare 21-byte frame header
// "decodes"). The default limit is PIL's: Image.open raises DecompressionBombError above
// 2 * MAX_IMAGE_PIXELS = 178956970 pixels, so we refuse exactly the images a PIL-based
// reference DETR refuses (~512 MiB decoded as RGB, far above any camera photo; COCO's are
// 640 px). Raise it per call (DecodeLimits) or for the process (set_max_image_pixels). stb
// itself refuses sides above 2^24 and, for PNG, more than 2^30 bytes of pixels, whatever the
// limit.
//
// Pixel operations that the DETR transforms need (resize like PIL's bilinear, crop, flip,
// to a normalised float tensor) live here too, next to the pixel layout they depend on.
#include <stb_image.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <memory>
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

// 2 * PIL's Image.MAX_IMAGE_PIXELS (1024^3 / 4 / 3 = 89478485): where PIL raises
// DecompressionBombError (it only warns between 1x and 2x).
inline constexpr int64_t kDefaultMaxImagePixels = 178956970;

namespace internal {
inline std::atomic<int64_t> g_max_image_pixels{kDefaultMaxImagePixels};
}  // namespace internal

// Process-wide pixel limit, used wherever no DecodeLimits is passed (read_image,
// CocoDataset::get). Atomic: data loader threads read it while the main thread may set it.
inline void set_max_image_pixels(int64_t max_pixels) {
  DETR_CHECK(max_pixels > 0, "set_max_image_pixels: limit " << max_pixels
                                                            << " must be positive");
  internal::g_max_image_pixels.store(max_pixels, std::memory_order_relaxed);
}
inline int64_t max_image_pixels() {
  return internal::g_max_image_pixels.load(std::memory_order_relaxed);
}

struct DecodeLimits {
  // Images whose header claims more than this many pixels (width * height) are refused before
  // decoding. `DecodeLimits{}` takes the process-wide value at the time it is made.
  int64_t max_pixels = max_image_pixels();
};

struct ImageHeader {
  int64_t width = 0, height = 0;
  int channels = 0;  // in the file (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA)
};

// The size stored in an encoded image's header, without decoding the pixels.
inline ImageHeader decode_image_header(const uint8_t* bytes, size_t size,
                                       const std::string& name) {
  DETR_CHECK(size > 0, "decode_image: " << name << " is empty (0 bytes)");
  DETR_CHECK(size <= size_t(INT32_MAX), "decode_image: " << name << " is larger than 2 GiB");
  int w = 0, h = 0, c = 0;
  DETR_CHECK(stbi_info_from_memory(bytes, int(size), &w, &h, &c) == 1,
             "decode_image: cannot decode " << name << ", its header is unreadable ("
                                            << stbi_failure_reason() << ")");
  return {w, h, c};
}

// Decode an encoded image held in memory; `name` (a file name) goes into the error message.
inline Image decode_image(const uint8_t* bytes, size_t size, const std::string& name,
                          const DecodeLimits& limits = {}) {
  DETR_CHECK(limits.max_pixels > 0, "decode_image: pixel limit " << limits.max_pixels
                                                                  << " must be positive");
  const ImageHeader hd = decode_image_header(bytes, size, name);
  DETR_CHECK(hd.width * hd.height <= limits.max_pixels,
             "decode_image: " << name << " is " << hd.width << " x " << hd.height << " = "
                              << hd.width * hd.height << " pixels by its header, more than the "
                              << "limit of " << limits.max_pixels << " (a decompression bomb?); "
                              << "if the image is genuine, raise the limit with "
                              << "detr::set_max_image_pixels(n) or DecodeLimits{n}");
  int w = 0, h = 0, channels_in_file = 0;
  std::unique_ptr<uint8_t, void (*)(void*)> p(
      stbi_load_from_memory(bytes, int(size), &w, &h, &channels_in_file, 3), stbi_image_free);
  DETR_CHECK(p != nullptr, "decode_image: cannot decode " << name << " ("
                                                          << stbi_failure_reason() << ")");
  // The limit was checked on the header's size: the pixels must be that size.
  DETR_CHECK(w == hd.width && h == hd.height,
             "decode_image: " << name << " decoded to " << w << " x " << h
                              << " pixels, its header says " << hd.width << " x " << hd.height);
  Image im{Tensor<uint8_t>::empty({h, w, 3})};
  std::copy_n(p.get(), size_t(h) * w * 3, im.pixels.data());
  return im;
}

inline std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  DETR_CHECK(f.good(), "cannot open file " << path);
  std::vector<uint8_t> bytes(size_t(f.tellg()));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size()));
  DETR_CHECK(f.good() || bytes.empty(), "cannot read file " << path);
  return bytes;
}

inline Image read_image(const std::string& path, const DecodeLimits& limits = {}) {
  auto bytes = read_file_bytes(path);
  return decode_image(bytes.data(), bytes.size(), path, limits);
}

namespace internal {
inline void png_put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(uint8_t(v >> s));
}
inline void png_chunk(std::vector<uint8_t>& out, const char* type, const uint8_t* data,
                      size_t n) {
  png_put_u32(out, uint32_t(n));
  size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data, data + n);
  png_put_u32(out, uint32_t(crc32(0, out.data() + start, uInt(n + 4))));
}
}  // namespace internal

// PNG bytes of an RGB image: Paeth-filtered rows deflated by zlib. Why not stb_image_write:
// its own deflate takes ~10 ms for a 160 x 160 canvas, zlib at level 3 ~1 ms, and FashionDet
// writes 9000 of them (stb is still what decodes).
inline std::vector<uint8_t> encode_png(const Image& im, int level = 6) {
  DETR_CHECK(im.pixels.defined() && im.pixels.rank() == 3 && im.pixels.dim(2) == 3,
             "encode_png: pixels must be [H, W, 3], got " << im.pixels.shape());
  const int64_t H = im.height(), W = im.width(), row = W * 3;
  std::vector<uint8_t> filtered(size_t(H * (row + 1)));  // [H, 1 + W * 3]
  for (int64_t y = 0; y < H; ++y) {
    const uint8_t* cur = im.pixels.data() + y * row;
    const uint8_t* up = y ? cur - row : nullptr;
    uint8_t* dst = filtered.data() + y * (row + 1);
    dst[0] = 4;  // Paeth
    for (int64_t i = 0; i < row; ++i) {
      int a = i >= 3 ? cur[i - 3] : 0, b = up ? up[i] : 0, c = (up && i >= 3) ? up[i - 3] : 0;
      int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
      int pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
      dst[1 + i] = uint8_t(cur[i] - pred);
    }
  }
  // Z_RLE: after Paeth filtering most redundancy is runs of small residuals; run-length
  // matching gets nearly all of the default strategy's ratio at a fraction of the time.
  z_stream zs{};
  DETR_CHECK(deflateInit2(&zs, level, Z_DEFLATED, 15, 8, Z_RLE) == Z_OK,
             "encode_png: zlib init failed");
  std::vector<uint8_t> z(deflateBound(&zs, uLong(filtered.size())));
  zs.next_in = filtered.data();
  zs.avail_in = uInt(filtered.size());
  zs.next_out = z.data();
  zs.avail_out = uInt(z.size());
  int rc = deflate(&zs, Z_FINISH);
  const size_t zlen = zs.total_out;
  deflateEnd(&zs);
  DETR_CHECK(rc == Z_STREAM_END, "encode_png: zlib compression failed (" << rc << ")");
  std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> ihdr;
  internal::png_put_u32(ihdr, uint32_t(W));
  internal::png_put_u32(ihdr, uint32_t(H));
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8 bits, RGB, deflate, adaptive filter, no interlace
  internal::png_chunk(out, "IHDR", ihdr.data(), ihdr.size());
  internal::png_chunk(out, "IDAT", z.data(), zlen);
  internal::png_chunk(out, "IEND", nullptr, 0);
  return out;
}

inline void write_png(const std::string& path, const Image& im, int level = 6) {
  auto bytes = encode_png(im, level);
  std::ofstream f(path, std::ios::binary);
  DETR_CHECK(f.good(), "write_png: cannot open " << path << " for writing");
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  DETR_CHECK(f.good(), "write_png: cannot write " << path);
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

namespace internal {
// Separable resampling of an interleaved [H, W, C] uint8 buffer into [height, width, C].
inline void resize_interleaved(const uint8_t* src, int64_t H, int64_t W, int C, int64_t height,
                               int64_t width, uint8_t* dst) {
  auto tx = resample_taps(W, width);
  auto ty = resample_taps(H, height);
  std::vector<float> horiz(size_t(H * width * C));  // [H, width, C]
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < width; ++x)
      for (int c = 0; c < C; ++c) {
        float acc = 0;
        for (int k = 0; k < tx.count[x]; ++k)
          acc += tx.weights[x * tx.max_taps + k] * src[(y * W + tx.first[x] + k) * C + c];
        horiz[(y * width + x) * C + c] = acc;
      }
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x)
      for (int c = 0; c < C; ++c) {
        float acc = 0;
        for (int k = 0; k < ty.count[y]; ++k)
          acc += ty.weights[y * ty.max_taps + k] * horiz[((ty.first[y] + k) * width + x) * C + c];
        dst[(y * width + x) * C + c] = uint8_t(std::clamp(acc, 0.f, 255.f) + 0.5f);
      }
}
}  // namespace internal

// Resize to height x width with PIL's bilinear filter (antialiased when shrinking).
inline Image resize(const Image& im, int64_t height, int64_t width) {
  DETR_CHECK(height > 0 && width > 0, "resize: target size " << height << " x " << width
                                                             << " must be positive");
  Image out{Tensor<uint8_t>::empty({height, width, 3})};
  internal::resize_interleaved(im.pixels.data(), im.height(), im.width(), 3, height, width,
                               out.pixels.data());
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
