// Ten training steps against PyTorch (tests/reference/make_adamw.py): forward, MSE loss,
// backward, clip_grad_norm_(max_norm=0.1) and AdamW with two parameter groups, comparing the
// loss, the clipped norm and every weight after every step.
#include "detr/nn/linear.hpp"
#include "detr/ops/elementwise.hpp"
#include "detr/optim/adamw.hpp"
#include "detr/optim/clip.hpp"
#include "helpers.hpp"

using namespace detr;

namespace {

// nn.Sequential(Linear(4, 8), ReLU(), Linear(8, 3)), named as torch names it.
struct Mlp {
  using Scalar = float;
  Linear<4, 8> l0;
  Linear<8, 3> l2;
  void init(Rng& rng) {
    l0.init(rng);
    l2.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("0", l0);
    v.child("2", l2);
  }
  // x [B, 4] -> [B, 3]
  Var<float> forward(const Var<float>& x) const { return l2.forward(relu(l0.forward(x))); }
};

// The mean of all elements (x [...] -> []), local to this test: it only needs the loss.
Var<float> mean_all(const Var<float>& x) {
  double s = 0;
  for (int64_t i = 0; i < x.numel(); ++i) s += x.value().data()[i];
  const int64_t n = x.numel();
  return record("mean_all", Tensor<float>::scalar(float(s / double(n))), {x},
                [shape = x.shape(), n](const Tensor<float>& g, auto& in) {
                  in.add(0, Tensor<float>::full(shape, g.item() / float(n)));
                });
}

}  // namespace

TEST_CASE("AdamW + clip_grad_norm: 10 steps match torch", "[optim][adamw][parity]") {
  auto ref = io::SafetensorsFile::load(std::string(DETR_TEST_DATA_DIR) + "/adamw_reference.safetensors");
  Mlp net;
  load_state_dict(net, ref, true, "init.");
  Var<float> x(ref.get<float>("x"));           // [16, 4]
  auto y = constant(ref.get<float>("y"));      // [16, 3]
  auto losses = ref.get<float>("loss");        // [10]
  auto norms = ref.get<float>("grad_norm");    // [10]

  auto params = named_parameters(net);
  std::vector<NamedParameter<float>> first(params.begin(), params.begin() + 2), second(params.begin() + 2, params.end());
  REQUIRE(first[0].name == "0.weight");
  REQUIRE(second[1].name == "2.bias");
  AdamW<float> opt({{first, 1e-3}, {second, 3e-3}}, {.lr = 1e-3, .weight_decay = 1e-4});

  for (int step = 1; step <= 10; ++step) {
    INFO("step " << step);
    opt.zero_grad();
    auto loss = mean_all(square(sub(net.forward(x), y)));
    loss.backward();
    float norm = clip_grad_norm(params, 0.1);
    opt.step();
    REQUIRE(loss.item() == Approx(losses.at({step - 1})).epsilon(1e-5));
    REQUIRE(norm == Approx(norms.at({step - 1})).epsilon(1e-5));
    for (auto& p : params) {
      INFO(p.name);
      REQUIRE_ALLCLOSE(p.var->value(), ref.get<float>("step" + std::to_string(step) + "." + p.name), 1e-5, 1e-6);
    }
  }
}
