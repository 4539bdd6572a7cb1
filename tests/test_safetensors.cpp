#include <cstdio>
#include <fstream>

#include "detr/io/safetensors.hpp"
#include "helpers.hpp"

using namespace detr;

namespace {
std::string tmp_path(const char* name) { return std::string("/tmp/detr_test_") + name; }
void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}
std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
}  // namespace

TEST_CASE("safetensors round trip of every dtype", "[io]") {
  auto f = Tensor<float>::from({2, 3}, {1, 2, 3, 4, 5, 6.5f});
  auto d = Tensor<double>::from({3}, {0.1, -2, 1e300});
  auto i = Tensor<int64_t>::from({2}, {-7, int64_t(1) << 40});
  auto b = Tensor<uint8_t>::from({4}, {1, 0, 0, 1});
  auto s = Tensor<float>::scalar(3.f);
  std::string path = tmp_path("roundtrip.safetensors");
  io::SafetensorsWriter().add("a.f", f).add("b.d", d).add("c.i", i).add("d.b", b).add("e", s)
      .metadata("format", "pt").save(path);
  auto file = io::SafetensorsFile::load(path);
  REQUIRE(file.names().size() == 5);
  REQUIRE(file.metadata().at("format") == "pt");
  REQUIRE(file.get<float>("a.f").to_vector() == f.to_vector());
  REQUIRE(file.get<double>("b.d").to_vector() == d.to_vector());
  REQUIRE(file.get<int64_t>("c.i").to_vector() == i.to_vector());
  REQUIRE(file.get<uint8_t>("d.b").to_vector() == b.to_vector());
  REQUIRE(file.get<float>("e").shape() == Shape{});
  REQUIRE(file.get<double>("a.f").at({1, 2}) == 6.5);  // converted on read
  REQUIRE_THROWS_WITH(file.get<float>("nope"), Catch::Contains("no tensor 'nope'") && Catch::Contains("a.f"));
  std::remove(path.c_str());
}

TEST_CASE("safetensors rejects corrupt and truncated files with the file name", "[io]") {
  std::string path = tmp_path("corrupt.safetensors");
  io::SafetensorsWriter().add("w", Tensor<float>::ones({16})).save(path);
  std::string good = read_bytes(path);

  write_bytes(path, good.substr(0, good.size() - 5));
  REQUIRE_THROWS_WITH(io::SafetensorsFile::load(path), Catch::Contains(path) && Catch::Contains("outside"));
  write_bytes(path, good.substr(0, 5));
  REQUIRE_THROWS_WITH(io::SafetensorsFile::load(path), Catch::Contains("truncated"));
  std::string bad_json = good;
  bad_json[8] = '#';  // the opening brace
  write_bytes(path, bad_json);
  REQUIRE_THROWS_WITH(io::SafetensorsFile::load(path), Catch::Contains("malformed JSON"));
  std::string huge = good;
  huge[6] = char(0x7f);  // header length far beyond the file
  write_bytes(path, huge);
  REQUIRE_THROWS_WITH(io::SafetensorsFile::load(path), Catch::Contains("exceeds the file size"));
  REQUIRE_THROWS_WITH(io::SafetensorsFile::load(tmp_path("missing.safetensors")), Catch::Contains("cannot open"));
  std::remove(path.c_str());
}

TEST_CASE("safetensors reads a file written by the python reference writer", "[io]") {
  // tests/reference/common.py wrote this: {"x": F32 [2,2] = [[1,2],[3,4]], "n": I64 [1] = [5]}
  auto file = io::SafetensorsFile::load(std::string(DETR_TEST_DATA_DIR) + "/io_python_writer.safetensors");
  REQUIRE(file.get<float>("x").to_vector() == std::vector<float>{1, 2, 3, 4});
  REQUIRE(file.get<int64_t>("n").item() == 5);
}
