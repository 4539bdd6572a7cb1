// What the example binaries read from a train checkpoint (examples/models.hpp): metadata that no
// train run writes is an error naming the file, not an allocation failure or a crash later.
#include "../examples/models.hpp"
#include "data_helpers.hpp"
#include "detr/nn/linear.hpp"
#include "helpers.hpp"

using namespace detr;

namespace {
std::string error_reading(const std::string& path) {
  try {
    examples::read_checkpoint_info(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST_CASE("read_checkpoint_info refuses absurd train metadata", "[examples][checkpoint]") {
  test::TempDir dir;
  Linear<2, 2> layer;
  Rng rng(0);
  layer.init(rng);
  examples::CheckpointInfo info;
  info.model = "detr";
  info.class_names = {"a", "b"};
  info.category_ids = {1, 2};
  const std::string ok = dir / "ok.safetensors";
  io::save_checkpoint(ok, layer, {}, examples::checkpoint_metadata(info));
  REQUIRE(examples::read_checkpoint_info(ok).image_size == 160);

  auto with = [&](const std::string& key, const std::string& value) {
    auto meta = examples::checkpoint_metadata(info);
    meta[key] = value;
    const std::string path = dir / (key + ".safetensors");
    io::save_checkpoint(path, layer, {}, meta);
    return error_reading(path);
  };
  CHECK_THAT(with("image_size", "1000000000"),
             Catch::Contains("image_size.safetensors has image_size 1000000000 in its train metadata, expected 32..4096"));
  CHECK_THAT(with("image_size", "-5"), Catch::Contains("expected 32..4096"));
  CHECK_THAT(with("image_size", "99999999999999999999999"), Catch::Contains("malformed train metadata"));
  CHECK_THAT(with("epoch", "-1"), Catch::Contains("epoch -1"));
  CHECK_THAT(with("class_names", "[]"), Catch::Contains("lists no classes"));
  CHECK_THAT(with("class_names", "{\"x\": 1}"), Catch::Contains("malformed train metadata"));
  CHECK_THAT(with("category_ids", "[1]"), Catch::Contains("lists 2 class names but 1 category ids"));
}

TEST_CASE("epoch_checkpoints lists epoch_NNNN.safetensors files by epoch", "[examples][checkpoint]") {
  test::TempDir dir;
  for (const char* f : {"epoch_0002.safetensors", "epoch_0010.safetensors", "epoch_12345.safetensors",
                        "epoch_01.safetensors", "notes.txt", "epoch_0003.safetensors.tmp"})
    test::write_text(dir / f, "x");
  const auto found = examples::epoch_checkpoints(dir.str());
  std::vector<int64_t> epochs;
  for (const auto& [e, path] : found) epochs.push_back(e);
  REQUIRE(epochs == std::vector<int64_t>{2, 10, 12345});
  REQUIRE(found.at(10).filename() == "epoch_0010.safetensors");
  REQUIRE(examples::epoch_checkpoints(dir / "missing").empty());
}
