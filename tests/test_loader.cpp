#include "detr/data/loader.hpp"

#include <set>

#include "detr/data/transforms.hpp"
#include "helpers.hpp"

using namespace detr;

namespace {
// Sample i: a (8 + i % 5) x (6 + i % 3) image whose pixels encode i, one box.
struct ToyDataset {
  int64_t n = 23;
  int64_t bad = -1;  // index whose get() throws
  int64_t size() const { return n; }
  Sample get(int64_t i) const {
    DETR_CHECK(i != bad, "toy dataset: sample " << i << " is corrupt");
    Sample s;
    s.image = Image::filled(8 + i % 5, 6 + i % 3, {uint8_t(i), uint8_t(2 * i), 7});
    s.target.image_id = i;
    s.target.boxes = Tensor<float>::from({1, 4}, {1, 1, 4, 5});
    s.target.labels = Tensor<int64_t>::from({1}, {i % 4});
    s.target.area = Tensor<float>::from({1}, {12});
    s.target.iscrowd = Tensor<uint8_t>::zeros({1});
    return s;
  }
};

// A random flip, so that per-sample seeding is visible in the pixels.
TensorSample flip_and_normalize(const Sample& s, Rng& rng) {
  return normalize(random_horizontal_flip()(s, rng));
}

std::vector<std::vector<float>> run_epoch(DataLoader<ToyDataset>& loader, int64_t epoch,
                                          std::vector<int64_t>* ids = nullptr) {
  std::vector<std::vector<float>> out;
  loader.start_epoch(epoch);
  while (auto b = loader.next()) {
    REQUIRE(b->images.dim(0) == b->size());
    out.push_back(b->images.to_vector());
    for (const auto& t : b->targets)
      if (ids) ids->push_back(t.image_id);
  }
  return out;
}
}  // namespace

TEST_CASE("every sample once per epoch, shuffled per epoch from the seed", "[loader]") {
  ToyDataset ds;
  DataLoader<ToyDataset> loader(ds, flip_and_normalize, {.batch_size = 4, .seed = 9});
  REQUIRE(loader.num_batches() == 6);
  std::vector<int64_t> ids0, ids1;
  auto e0 = run_epoch(loader, 0, &ids0);
  run_epoch(loader, 1, &ids1);
  REQUIRE(e0.size() == 6);
  REQUIRE(std::set<int64_t>(ids0.begin(), ids0.end()).size() == 23);
  REQUIRE(ids0 != ids1);
  REQUIRE(ids0 == loader.epoch_order(0));
  std::vector<int64_t> sorted = ids0;
  std::sort(sorted.begin(), sorted.end());
  REQUIRE(sorted != ids0);  // actually shuffled
}

TEST_CASE("batches do not depend on the number of workers", "[loader]") {
  ToyDataset ds;
  DataLoader<ToyDataset> a(ds, flip_and_normalize, {.batch_size = 3, .seed = 4, .num_workers = 0});
  DataLoader<ToyDataset> b(ds, flip_and_normalize, {.batch_size = 3, .seed = 4, .num_workers = 3, .prefetch = 2});
  REQUIRE(run_epoch(a, 2) == run_epoch(b, 2));
  REQUIRE(run_epoch(a, 2) != run_epoch(a, 3));
}

TEST_CASE("drop_last and no shuffle", "[loader]") {
  ToyDataset ds;
  DataLoader<ToyDataset> loader(ds, flip_and_normalize,
                                {.batch_size = 5, .shuffle = false, .drop_last = true});
  REQUIRE(loader.num_batches() == 4);
  std::vector<int64_t> ids;
  run_epoch(loader, 0, &ids);
  REQUIRE(ids.size() == 20);
  for (int64_t i = 0; i < 20; ++i) REQUIRE(ids[i] == i);
}

TEST_CASE("a worker's error surfaces in next(); bad options are refused", "[loader][error]") {
  ToyDataset ds;
  ds.bad = 7;
  DataLoader<ToyDataset> loader(ds, flip_and_normalize, {.batch_size = 4, .shuffle = false});
  loader.start_epoch(0);
  REQUIRE(loader.next().has_value());
  REQUIRE_THROWS_WITH(loader.next(), Catch::Contains("sample 7 is corrupt"));
  REQUIRE_THROWS_WITH(DataLoader<ToyDataset>(ds, flip_and_normalize, {.batch_size = 0}),
                      Catch::Contains("batch_size"));
  DataLoader<ToyDataset> fresh(ds, flip_and_normalize);
  REQUIRE_THROWS_WITH(fresh.next(), Catch::Contains("start_epoch"));
}
