#pragma once
// FashionDet: the built-in detection dataset, generated from Fashion-MNIST (Debian package
// dataset-fashion-mnist, IDX .gz files under /usr/share/datasets/fashion-mnist/).
//
// Why a generated dataset: it is real image content (garments, 10 classes), small enough to
// train a DETR on two CPU cores, and every box is exact. Each canvas is W x H with W, H drawn
// from [128, 192]; 1 to 8 items, each a Fashion-MNIST image resized to a square side in
// [14, 84], tinted with a random colour that stands out from a low-contrast textured
// background, placed so that every pair of boxes has IoU <= 0.3. An item's box is the tight
// box of its pasted pixels (alpha >= kAlphaThreshold); its area is the box area.
//
// Reproducible: canvas i of a split is drawn from its own Rng seeded by (seed, split, i), so
// the files do not depend on the number of threads. The train split draws from Fashion-MNIST's
// train images, the val split from its test images.
#include <zlib.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "detr/core/error.hpp"
#include "detr/core/rng.hpp"
#include "detr/core/tensor.hpp"
#include "detr/data/image.hpp"
#include "detr/data/seed.hpp"

namespace detr {

inline const std::array<const char*, 10> kFashionMnistClasses = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

struct FashionMnist {
  Tensor<uint8_t> images;  // [N, 28, 28] grey, 0 = background
  Tensor<uint8_t> labels;  // [N] in [0, 10)
  int64_t size() const { return labels.numel(); }
};

namespace internal {
// An IDX file (big-endian header: magic 0x0000080D with D dims, then D uint32 sizes, then
// uint8 data), gzip-compressed.
inline Tensor<uint8_t> read_idx_gz(const std::string& path, int expected_dims) {
  DETR_CHECK(std::filesystem::exists(path),
             "Fashion-MNIST file " << path << " not found: install the Debian package "
                                   << "dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"
                                   << " or pass the folder that holds the IDX .gz files");
  gzFile f = gzopen(path.c_str(), "rb");
  DETR_CHECK(f != nullptr, "cannot open " << path);
  auto read_exact = [&](void* dst, size_t n) {
    size_t got = 0;
    while (got < n) {
      int r = gzread(f, static_cast<char*>(dst) + got, unsigned(std::min<size_t>(n - got, 1u << 30)));
      if (r <= 0) break;
      got += size_t(r);
    }
    return got == n;
  };
  auto be32 = [](const uint8_t* b) {
    return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | b[3];
  };
  uint8_t head[4];
  bool ok = read_exact(head, 4);
  if (!ok || head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] != expected_dims) {
    gzclose(f);
    DETR_FAIL(path << " is not an IDX file of unsigned bytes with " << expected_dims
                   << " dimensions (bad or truncated header)");
  }
  std::vector<int64_t> dims(expected_dims);
  for (int d = 0; d < expected_dims; ++d) {
    uint8_t b[4];
    if (!read_exact(b, 4)) {
      gzclose(f);
      DETR_FAIL(path << ": truncated IDX header");
    }
    dims[d] = be32(b);
  }
  auto t = Tensor<uint8_t>::empty(Shape(std::span<const int64_t>(dims)));
  ok = read_exact(t.data(), size_t(t.numel()));
  gzclose(f);
  DETR_CHECK(ok, path << ": truncated IDX data, expected " << t.numel() << " bytes for shape "
                      << t.shape());
  return t;
}

}  // namespace internal

// split: "train" (60000 images) or "test" (10000 images).
inline FashionMnist load_fashion_mnist(const std::string& split,
                                       const std::string& dir = kFashionMnistDir) {
  DETR_CHECK(split == "train" || split == "test",
             "load_fashion_mnist: split must be 'train' or 'test', got '" << split << "'");
  const std::string prefix = dir + "/" + (split == "train" ? "train" : "t10k");
  FashionMnist m;
  m.images = internal::read_idx_gz(prefix + "-images-idx3-ubyte.gz", 3);
  m.labels = internal::read_idx_gz(prefix + "-labels-idx1-ubyte.gz", 1);
  DETR_CHECK(m.images.dim(0) == m.labels.dim(0) && m.images.dim(1) == 28 && m.images.dim(2) == 28,
             "Fashion-MNIST " << split << " in " << dir << ": images " << m.images.shape()
                              << " and labels " << m.labels.shape()
                              << " do not match [N, 28, 28] / [N]");
  return m;
}

struct FashionDetConfig {
  int64_t train_images = 8000;
  int64_t val_images = 1000;
  int64_t min_canvas = 128, max_canvas = 192;      // width and height, each drawn in range
  int64_t min_items = 1, max_items = 8;
  int64_t min_item_side = 14, max_item_side = 84;  // square side of a resized item
  double max_iou = 0.3;                            // between any two boxes of a canvas
  double background_contrast = 1.0;                // 0: flat background (tests)
  uint64_t seed = 0;
  int threads = 2;
  int png_compression = 1;  // zlib level (with Z_RLE the size hardly depends on it)
};

struct FashionDetObject {
  std::array<int64_t, 4> box{};  // x, y, w, h in pixels
  int64_t label = 0;             // [0, 10)
};

struct FashionDetCanvas {
  Image image;
  std::vector<FashionDetObject> objects;
};

inline constexpr int kAlphaThreshold = 16;  // item pixels fainter than this are not pasted

// One canvas from its own Rng.
inline FashionDetCanvas render_fashion_det_canvas(const FashionMnist& mnist, Rng& rng,
                                                  const FashionDetConfig& cfg) {
  DETR_CHECK(mnist.size() > 0, "FashionDet: no Fashion-MNIST images loaded");
  const int64_t W = rng.randint(cfg.min_canvas, cfg.max_canvas);
  const int64_t H = rng.randint(cfg.min_canvas, cfg.max_canvas);
  FashionDetCanvas out;
  out.image = Image::filled(H, W);

  // Background: a mid-tone base colour, a soft diagonal wave and smooth value noise (random
  // levels on a 16 px grid, bilinearly interpolated). Smooth, so PNGs stay small and fast.
  std::array<double, 3> base;
  for (auto& b : base) b = rng.uniform(90, 160);
  const double amp = 10 * cfg.background_contrast, noise = 12 * cfg.background_contrast;
  const double fx = rng.uniform(0.02, 0.12), fy = rng.uniform(0.02, 0.12);
  const double phase = rng.uniform(0, 2 * M_PI);
  constexpr int64_t kCell = 16;
  const int64_t gw = W / kCell + 2, gh = H / kCell + 2;
  std::vector<double> grid(size_t(gw * gh * 3));  // [gh, gw, 3] in [-1, 1]
  for (auto& g : grid) g = rng.uniform() * 2 - 1;
  // sin(fx x + fy y + phase) = sin(fx x) cos(fy y + phase) + cos(fx x) sin(fy y + phase):
  // W + H sines instead of W * H.
  std::vector<double> sx(static_cast<size_t>(W)), cx(static_cast<size_t>(W));  // [W]
  for (int64_t x = 0; x < W; ++x) {
    sx[x] = std::sin(fx * double(x));
    cx[x] = std::cos(fx * double(x));
  }
  for (int64_t y = 0; y < H; ++y) {
    const int64_t gy = y / kCell;
    const double ty = double(y % kCell) / kCell;
    const double sy = std::sin(fy * double(y) + phase), cy = std::cos(fy * double(y) + phase);
    const double* g0 = &grid[size_t(gy * gw * 3)];        // row gy
    const double* g1 = &grid[size_t((gy + 1) * gw * 3)];  // row gy + 1
    for (int64_t x = 0; x < W; ++x) {
      const int64_t gx = x / kCell;
      const double tx = double(x % kCell) / kCell;
      const double wave = amp * (sx[x] * cy + cx[x] * sy);
      uint8_t* p = out.image.at(y, x);
      for (int c = 0; c < 3; ++c) {
        const int64_t i0 = gx * 3 + c, i1 = i0 + 3;
        const double v = (1 - ty) * ((1 - tx) * g0[i0] + tx * g0[i1]) +
                         ty * ((1 - tx) * g1[i0] + tx * g1[i1]);
        p[c] = uint8_t(std::clamp(base[c] + wave + noise * v, 0.0, 255.0) + 0.5);
      }
    }
  }
  const double base_luma = 0.299 * base[0] + 0.587 * base[1] + 0.114 * base[2];

  auto iou = [](const std::array<int64_t, 4>& a, const std::array<int64_t, 4>& b) {
    double iw = double(std::min(a[0] + a[2], b[0] + b[2]) - std::max(a[0], b[0]));
    double ih = double(std::min(a[1] + a[3], b[1] + b[3]) - std::max(a[1], b[1]));
    if (iw <= 0 || ih <= 0) return 0.0;
    double inter = iw * ih;
    return inter / (double(a[2] * a[3] + b[2] * b[3]) - inter);
  };

  const int64_t n_items = rng.randint(cfg.min_items, cfg.max_items);
  for (int64_t n = 0; n < n_items; ++n) {
    const int64_t idx = rng.randint(0, mnist.size() - 1);
    const int64_t side = rng.randint(cfg.min_item_side, cfg.max_item_side);
    // The 28 x 28 garment as an alpha mask, resized like PIL's bilinear.
    std::vector<uint8_t> alpha(size_t(side * side));  // [side, side]
    internal::resize_interleaved(mnist.images.data() + idx * 784, 28, 28, 1, side, side,
                                 alpha.data());
    int64_t bx0 = side, by0 = side, bx1 = -1, by1 = -1;  // tight box inside the item, inclusive
    for (int64_t y = 0; y < side; ++y)
      for (int64_t x = 0; x < side; ++x)
        if (alpha[size_t(y * side + x)] >= kAlphaThreshold) {
          bx0 = std::min(bx0, x), by0 = std::min(by0, y);
          bx1 = std::max(bx1, x), by1 = std::max(by1, y);
        }
    if (bx1 < 0) continue;  // an (almost) empty garment: nothing to detect
    // A tint whose luminance differs from the background's by at least 70 levels.
    std::array<double, 3> tint;
    for (int tries = 0;; ++tries) {
      for (auto& t : tint) t = rng.uniform(0, 255);
      double luma = 0.299 * tint[0] + 0.587 * tint[1] + 0.114 * tint[2];
      if (std::abs(luma - base_luma) >= 70 || tries > 100) break;
    }
    // Placement: the tight box lies inside the canvas; retry until IoU <= max_iou.
    for (int tries = 0; tries < 50; ++tries) {
      const int64_t px = rng.randint(-bx0, W - 1 - bx1), py = rng.randint(-by0, H - 1 - by1);
      std::array<int64_t, 4> box = {px + bx0, py + by0, bx1 - bx0 + 1, by1 - by0 + 1};
      bool ok = true;
      for (const auto& o : out.objects) ok = ok && iou(box, o.box) <= cfg.max_iou;
      if (!ok) continue;
      for (int64_t y = by0; y <= by1; ++y)
        for (int64_t x = bx0; x <= bx1; ++x) {
          const int a = alpha[size_t(y * side + x)];
          if (a < kAlphaThreshold) continue;
          uint8_t* p = out.image.at(py + y, px + x);
          const double t = a / 255.0;
          for (int c = 0; c < 3; ++c)
            p[c] = uint8_t(std::clamp(p[c] * (1 - t) + tint[c] * t, 0.0, 255.0) + 0.5);
        }
      out.objects.push_back({box, int64_t(mnist.labels.data()[idx])});
      break;
    }
  }
  return out;
}

// Writes <out_dir>/annotations/instances_{train,val}.json and the PNGs under
// <out_dir>/{train,val}/. Returns the number of objects written.
inline int64_t make_fashion_det(const std::string& out_dir, const FashionDetConfig& cfg,
                                const std::string& mnist_dir = kFashionMnistDir) {
  DETR_CHECK(cfg.min_canvas >= 1 && cfg.min_canvas <= cfg.max_canvas && cfg.min_items >= 1 &&
                 cfg.min_items <= cfg.max_items && cfg.min_item_side >= 1 &&
                 cfg.min_item_side <= cfg.max_item_side && cfg.max_item_side <= cfg.min_canvas &&
                 cfg.threads >= 1 && cfg.train_images >= 0 && cfg.val_images >= 0,
             "make_fashion_det: inconsistent config (need 1 <= min <= max for canvas, items and "
             "item sides, item side <= canvas, threads >= 1)");
  namespace fs = std::filesystem;
  fs::create_directories(fs::path(out_dir) / "annotations");
  int64_t total_objects = 0;
  const std::pair<const char*, const char*> splits[2] = {{"train", "train"}, {"val", "test"}};
  for (int s = 0; s < 2; ++s) {
    const int64_t count = s == 0 ? cfg.train_images : cfg.val_images;
    const std::string split = splits[s].first;
    const FashionMnist mnist = load_fashion_mnist(splits[s].second, mnist_dir);
    fs::create_directories(fs::path(out_dir) / split);
    std::vector<std::vector<FashionDetObject>> objects(static_cast<size_t>(count));
    std::vector<std::array<int64_t, 2>> sizes(static_cast<size_t>(count));  // (w, h)
    auto file_name = [](int64_t i) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%06lld.png", (long long)(i + 1));
      return std::string(buf);
    };
    std::vector<std::string> errors(static_cast<size_t>(cfg.threads));
    auto work = [&](int tid) {
      try {
        for (int64_t i = tid; i < count; i += cfg.threads) {
          Rng rng(internal::mix_seed(cfg.seed, uint64_t(s), uint64_t(i)));
          FashionDetCanvas c = render_fashion_det_canvas(mnist, rng, cfg);
          write_png((fs::path(out_dir) / split / file_name(i)).string(), c.image,
                    cfg.png_compression);
          sizes[i] = {c.image.width(), c.image.height()};
          objects[i] = std::move(c.objects);
        }
      } catch (const std::exception& e) {
        errors[tid] = e.what();
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < cfg.threads; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto& th : pool) th.join();
    for (const auto& e : errors) DETR_CHECK(e.empty(), "make_fashion_det: " << e);

    nlohmann::json doc;
    doc["info"] = {{"description", "FashionDet " + split + " (DETR++, from Fashion-MNIST)"},
                   {"seed", cfg.seed}};
    doc["categories"] = nlohmann::json::array();
    for (int k = 0; k < 10; ++k)
      doc["categories"].push_back(
          {{"id", k + 1}, {"name", kFashionMnistClasses[k]}, {"supercategory", "fashion"}});
    doc["images"] = nlohmann::json::array();
    doc["annotations"] = nlohmann::json::array();
    int64_t ann_id = 1;
    for (int64_t i = 0; i < count; ++i) {
      doc["images"].push_back({{"id", i + 1}, {"file_name", file_name(i)},
                               {"width", sizes[i][0]}, {"height", sizes[i][1]}});
      for (const auto& o : objects[i])
        doc["annotations"].push_back({{"id", ann_id++},
                                      {"image_id", i + 1},
                                      {"category_id", o.label + 1},
                                      {"bbox", {o.box[0], o.box[1], o.box[2], o.box[3]}},
                                      {"area", o.box[2] * o.box[3]},
                                      {"iscrowd", 0}});
    }
    total_objects += ann_id - 1;
    const std::string json_path = (fs::path(out_dir) / "annotations" /
                                   ("instances_" + split + ".json")).string();
    std::ofstream f(json_path);
    DETR_CHECK(f.good(), "make_fashion_det: cannot write " << json_path);
    f << doc.dump();
  }
  return total_objects;
}

}  // namespace detr
