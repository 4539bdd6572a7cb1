#pragma once
// safetensors read / write (https://huggingface.co/docs/safetensors): an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}}, then the raw data.
// Supported dtypes: F32, F64, I64, BOOL. Every malformed or truncated file is a detr::Error
// that names the file and what is wrong; nothing is read past the end of the file.
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "detr/core/tensor.hpp"

namespace detr::io {

enum class DType { F32, F64, I64, BOOL };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I64: return "I64";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}
inline size_t dtype_size(DType d) { return d == DType::F32 ? 4 : d == DType::BOOL ? 1 : 8; }

template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DType::F32;
  else if constexpr (std::is_same_v<T, double>) return DType::F64;
  else if constexpr (std::is_same_v<T, int64_t>) return DType::I64;
  else if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, bool>) return DType::BOOL;
  else static_assert(sizeof(T) == 0, "safetensors: supported element types are float, double, int64_t, uint8_t (BOOL)");
}

// A whole safetensors file in memory.
class SafetensorsFile {
 public:
  struct Entry {
    DType dtype;
    Shape shape;
    size_t begin, end;  // byte offsets into the data section
  };

  static SafetensorsFile load(const std::string& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    DETR_CHECK(f, "safetensors: cannot open '" << path << "'");
    auto size = static_cast<size_t>(f.tellg());
    f.seekg(0);
    std::vector<char> bytes(size);
    f.read(bytes.data(), std::streamsize(size));
    DETR_CHECK(f, "safetensors: read error in '" << path << "'");
    return parse(std::move(bytes), path);
  }

  static SafetensorsFile parse(std::vector<char> bytes, const std::string& path) {
    SafetensorsFile sf;
    sf.path_ = path;
    DETR_CHECK(bytes.size() >= 8, "safetensors: '" << path << "' is truncated (" << bytes.size()
                                                   << " bytes, need at least 8 for the header length)");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[i]);
    DETR_CHECK(n <= bytes.size() - 8, "safetensors: '" << path << "' header length " << n
                                                       << " exceeds the file size " << bytes.size());
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + int64_t(n));
    } catch (const std::exception& e) {
      DETR_FAIL("safetensors: '" << path << "' has a malformed JSON header: " << e.what());
    }
    DETR_CHECK(header.is_object(), "safetensors: '" << path << "' header is not a JSON object");
    size_t data_size = bytes.size() - 8 - n;
    for (auto& [name, e] : header.items()) {
      if (name == "__metadata__") {
        for (auto& [k, v] : e.items())
          if (v.is_string()) sf.metadata_[k] = v.get<std::string>();
        continue;
      }
      try {
        Entry entry;
        std::string dt = e.at("dtype").get<std::string>();
        if (dt == "F32") entry.dtype = DType::F32;
        else if (dt == "F64") entry.dtype = DType::F64;
        else if (dt == "I64") entry.dtype = DType::I64;
        else if (dt == "BOOL") entry.dtype = DType::BOOL;
        else DETR_FAIL("unsupported dtype " << dt << " (supported: F32, F64, I64, BOOL)");
        for (auto d : e.at("shape")) entry.shape.push_back(d.get<int64_t>());
        auto off = e.at("data_offsets");
        DETR_CHECK(off.is_array() && off.size() == 2, "data_offsets must be [begin, end]");
        entry.begin = off[0].get<size_t>();
        entry.end = off[1].get<size_t>();
        DETR_CHECK(entry.begin <= entry.end && entry.end <= data_size,
                   "data_offsets [" << entry.begin << ", " << entry.end << ") outside the "
                                    << data_size << "-byte data section (file truncated?)");
        size_t want = size_t(entry.shape.numel()) * dtype_size(entry.dtype);
        DETR_CHECK(entry.end - entry.begin == want, "shape " << entry.shape << " of " << dt << " needs "
                                                             << want << " bytes, offsets give "
                                                             << entry.end - entry.begin);
        sf.entries_[name] = entry;
      } catch (const Error& err) {
        DETR_FAIL("safetensors: '" << path << "' tensor '" << name << "': " << err.what());
      } catch (const std::exception& err) {
        DETR_FAIL("safetensors: '" << path << "' tensor '" << name << "': malformed entry: " << err.what());
      }
    }
    sf.data_.assign(bytes.begin() + 8 + int64_t(n), bytes.end());
    return sf;
  }

  const std::string& path() const { return path_; }
  bool contains(const std::string& name) const { return entries_.count(name) > 0; }
  std::vector<std::string> names() const {
    std::vector<std::string> v;
    for (auto& [k, e] : entries_) v.push_back(k);
    return v;
  }
  const Entry& entry(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      std::string have;
      for (auto& [k, e] : entries_) have += (have.empty() ? "" : ", ") + k;
      DETR_FAIL("safetensors: '" << path_ << "' has no tensor '" << name << "' (it has: " << have << ")");
    }
    return it->second;
  }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor converted to T (float <-> double, int64, bool -> 0/1 all allowed).
  template <class T>
  Tensor<T> get(const std::string& name) const {
    const Entry& e = entry(name);
    auto t = Tensor<T>::empty(e.shape);
    const char* src = data_.data() + e.begin;
    int64_t n = e.shape.numel();
    if (dtype_of<T>() == e.dtype) {
      if (n) std::memcpy(t.data(), src, size_t(n) * sizeof(T));
      return t;
    }
    auto convert = [&](auto tag) {
      using S = decltype(tag);
      for (int64_t i = 0; i < n; ++i) {
        S v;
        std::memcpy(&v, src + i * sizeof(S), sizeof(S));
        t.data()[i] = static_cast<T>(v);
      }
    };
    switch (e.dtype) {
      case DType::F32: convert(float{}); break;
      case DType::F64: convert(double{}); break;
      case DType::I64: convert(int64_t{}); break;
      case DType::BOOL: convert(uint8_t{}); break;
    }
    return t;
  }

 private:
  std::string path_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
  std::vector<char> data_;
};

// Collects tensors, then writes one file (names sorted, as the reference writer does).
class SafetensorsWriter {
 public:
  template <class T>
  SafetensorsWriter& add(const std::string& name, const Tensor<T>& t) {
    DETR_CHECK(!entries_.count(name), "safetensors: tensor '" << name << "' added twice");
    Blob b{dtype_of<T>(), t.shape(), std::string(reinterpret_cast<const char*>(t.data()),
                                                 size_t(t.numel()) * sizeof(T))};
    entries_.emplace(name, std::move(b));
    return *this;
  }
  SafetensorsWriter& metadata(const std::string& key, const std::string& value) {
    metadata_[key] = value;
    return *this;
  }

  void save(const std::string& path) const {
    nlohmann::json header = nlohmann::json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    size_t off = 0;
    for (auto& [name, b] : entries_) {
      header[name] = {{"dtype", dtype_name(b.dtype)},
                      {"shape", std::vector<int64_t>(b.shape.begin(), b.shape.end())},
                      {"data_offsets", {off, off + b.bytes.size()}}};
      off += b.bytes.size();
    }
    std::string h = header.dump();
    h.append((8 - h.size() % 8) % 8, ' ');  // keep the data section 8-byte aligned
    std::string tmp = path + ".tmp";
    {
      std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
      DETR_CHECK(f, "safetensors: cannot write '" << tmp << "'");
      uint64_t n = h.size();
      char len[8];
      for (int i = 0; i < 8; ++i) len[i] = char((n >> (8 * i)) & 0xff);
      f.write(len, 8);
      f.write(h.data(), std::streamsize(h.size()));
      for (auto& [name, b] : entries_) f.write(b.bytes.data(), std::streamsize(b.bytes.size()));
      DETR_CHECK(f, "safetensors: write error on '" << tmp << "'");
    }
    DETR_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0,
               "safetensors: cannot move '" << tmp << "' to '" << path << "'");
  }

 private:
  struct Blob {
    DType dtype;
    Shape shape;
    std::string bytes;
  };
  std::map<std::string, Blob> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace detr::io
