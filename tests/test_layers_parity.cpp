// Linear, LayerNorm, MLP and FFN against PyTorch (tests/reference/make_layers.py): outputs and
// the gradients of inputs and every parameter, float32.
#include "detr/nn/ffn.hpp"
#include "detr/nn/layer_norm.hpp"
#include "detr/nn/linear.hpp"
#include "detr/nn/mlp.hpp"
#include "parity.hpp"

using namespace detr;
using detr::test::reference;

namespace {
template <class M>
void check_case(M& m, const std::string& c) {
  const auto& ref = reference("layers");
  load_state_dict(m, ref, true, c + ".");
  Var<float> x(ref.get<float>(c + ".x"), true);
  Var<float> y = m.forward(x);
  REQUIRE_ALLCLOSE(y.value(), ref.get<float>(c + ".out"), 1e-4, 1e-5);
  y.backward(ref.get<float>(c + ".grad_out"));
  REQUIRE_ALLCLOSE(x.grad(), ref.get<float>(c + ".grad.x"), 1e-4, 1e-5);
  detr::test::require_parameter_grads(m, ref, c);
}
}  // namespace

TEST_CASE("Linear matches torch.nn.Linear", "[parity][nn]") {
  Linear<16, 8> m;
  check_case(m, "linear");
}

TEST_CASE("LayerNorm matches torch.nn.LayerNorm", "[parity][nn]") {
  LayerNorm<16> m;
  check_case(m, "layer_norm");
}

TEST_CASE("MLP matches DETR's box-head MLP", "[parity][nn]") {
  MLP<16, 32, 4, 3> m;
  check_case(m, "mlp");
}

TEST_CASE("FFN matches DETR's post-norm feed-forward block", "[parity][nn]") {
  FFN<16, 64> m;
  eval(m);
  check_case(m, "ffn");
}

TEST_CASE("layer parameter names follow the PyTorch state_dict", "[nn]") {
  MLP<16, 32, 4, 3> mlp;
  std::vector<std::string> names;
  for (auto& p : named_parameters(mlp)) names.push_back(p.name);
  REQUIRE(names == std::vector<std::string>{"layers.0.weight", "layers.0.bias", "layers.1.weight",
                                            "layers.1.bias", "layers.2.weight", "layers.2.bias"});
  FFN<16, 64, "norm3"> ffn;
  names.clear();
  for (auto& p : named_parameters(ffn)) names.push_back(p.name);
  REQUIRE(names == std::vector<std::string>{"linear1.weight", "linear1.bias", "linear2.weight",
                                            "linear2.bias", "norm3.weight", "norm3.bias"});
  Repeat<2, Linear<4, 4>> stack;
  names.clear();
  for (auto& p : named_parameters(stack)) names.push_back(p.name);
  REQUIRE(names.front() == "0.weight");
  REQUIRE(names.back() == "1.bias");
}

TEST_CASE("Linear and LayerNorm initialise as torch does", "[nn]") {
  Rng rng(1);
  Linear<64, 32> lin;
  lin.init(rng);
  auto w = lin.weight.value();
  double bound = 1.0 / 8.0, mx = 0, mean = 0;
  for (float v : w.to_vector()) {
    mx = std::max(mx, double(std::abs(v)));
    mean += v / w.numel();
  }
  REQUIRE(mx <= bound);
  REQUIRE(mx > 0.95 * bound);
  REQUIRE(std::abs(mean) < 0.01);
  LayerNorm<8> ln;
  ln.init(rng);
  REQUIRE(ln.weight.value().to_vector() == std::vector<float>(8, 1.f));
}

TEST_CASE("state_dict save and strict load round trip; errors name the tensor", "[nn][io]") {
  Rng rng(3);
  MLP<4, 8, 2, 2> a, b;
  a.init(rng);
  save_state_dict(a, "/tmp/detr_mlp.safetensors");
  auto file = io::SafetensorsFile::load("/tmp/detr_mlp.safetensors");
  load_state_dict(b, file);
  REQUIRE(b.last.weight.value().to_vector() == a.last.weight.value().to_vector());
  MLP<4, 9, 2, 2> wrong;
  REQUIRE_THROWS_WITH(load_state_dict(wrong, file), Catch::Contains("layers.0.weight") && Catch::Contains("[9, 4]"));
  MLP<4, 8, 2, 3> deeper;  // its layers.1 is [8, 8] where the file's is [2, 8]
  REQUIRE_THROWS_WITH(load_state_dict(deeper, file), Catch::Contains("layers.1.weight") && Catch::Contains("[8, 8]"));
  Linear<4, 8, float, false> no_bias;
  save_state_dict(no_bias, "/tmp/detr_nobias.safetensors");
  Linear<4, 8> with_bias;
  REQUIRE_THROWS_WITH(load_state_dict(with_bias, io::SafetensorsFile::load("/tmp/detr_nobias.safetensors")),
                      Catch::Contains("lacks") && Catch::Contains("bias"));
  MLP<4, 8, 2, 1> shallower;
  REQUIRE_THROWS_WITH(load_state_dict(shallower, file), Catch::Contains("layers.0.weight"));
}
