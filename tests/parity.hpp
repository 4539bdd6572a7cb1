#pragma once
// Parity-test helpers: load a layer's weights from a reference file written by
// tests/reference/*.py, run it, backprop the stored upstream gradient, and compare.
#include "detr/io/safetensors.hpp"
#include "detr/nn/module.hpp"
#include "helpers.hpp"

namespace detr::test {

inline const io::SafetensorsFile& reference(const std::string& name) {
  static std::map<std::string, io::SafetensorsFile> cache;
  auto it = cache.find(name);
  if (it == cache.end())
    it = cache.emplace(name, io::SafetensorsFile::load(std::string(DETR_TEST_DATA_DIR) + "/" + name + ".safetensors")).first;
  return it->second;
}

// Every parameter's gradient against `<case>.grad.<name>`.
template <class M>
void require_parameter_grads(M& m, const io::SafetensorsFile& ref, const std::string& c,
                             double rtol = 1e-4, double atol = 1e-5) {
  for (auto& p : named_parameters(m)) {
    INFO("parameter " << p.name);
    REQUIRE(p.var->grad().defined());
    REQUIRE_ALLCLOSE(p.var->grad(), ref.get<float>(c + ".grad." + p.name), rtol, atol);
  }
}

}  // namespace detr::test
