#include <cmath>
#include <cstring>

#include "detr/ops/elementwise.hpp"
#include "detr/optim/adamw.hpp"
#include "detr/optim/clip.hpp"
#include "detr/optim/schedule.hpp"
#include "detr/optim/sgd.hpp"
#include "helpers.hpp"

using namespace detr;
using P = std::vector<NamedParameter<double>>;

namespace {
Var<double> leaf(std::initializer_list<double> v) {
  return Var<double>(Tensor<double>::from({int64_t(v.size())}, v), true);
}
void set_grad(Var<double>& p, std::initializer_list<double> g) {
  // The gradient of sum(p * c) is c: the simplest way to hand a leaf a chosen gradient.
  p.zero_grad();
  mul(p, constant(Tensor<double>::from({int64_t(g.size())}, g))).backward(Tensor<double>::ones(p.shape()));
}
}  // namespace

TEST_CASE("AdamW: two hand-computed steps", "[optim][adamw]") {
  // eps = 0 makes the numbers round: with a constant gradient m_hat = g and v_hat = g^2, so each
  // step moves by exactly lr * sign(g) after the decoupled decay p *= 1 - lr * wd.
  auto p = leaf({1.0, -2.0});
  AdamW<double> opt(P{{"p", &p}}, {.lr = 0.1, .eps = 0.0, .weight_decay = 0.01});
  set_grad(p, {0.5, -0.1});
  opt.step();
  REQUIRE(p.value().at({0}) == Approx(1.0 * 0.999 - 0.1).epsilon(1e-14));
  REQUIRE(p.value().at({1}) == Approx(-2.0 * 0.999 + 0.1).epsilon(1e-14));
  REQUIRE(opt.state(0).step == 1);
  REQUIRE(opt.state(0).buffers[0].at({0}) == Approx(0.05).epsilon(1e-14));     // exp_avg
  REQUIRE(opt.state(0).buffers[1].at({0}) == Approx(0.00025).epsilon(1e-14));  // exp_avg_sq
  opt.step();  // same gradient: m = 0.095, v = 0.00049975, bias corrections 0.19 and 0.001999
  REQUIRE(opt.state(0).buffers[0].at({0}) == Approx(0.095).epsilon(1e-14));
  REQUIRE(opt.state(0).buffers[1].at({0}) == Approx(0.00049975).epsilon(1e-14));
  REQUIRE(p.value().at({0}) == Approx((0.999 - 0.1) * 0.999 - 0.1).epsilon(1e-13));
  REQUIRE(p.value().at({1}) == Approx((-1.998 + 0.1) * 0.999 + 0.1).epsilon(1e-13));
}

TEST_CASE("AdamW: eps and changing gradients follow the torch formula", "[optim][adamw]") {
  // Gradients 1.0, then -0.5 (lr 0.01, wd 0.1, eps 1e-3 so it matters), written out by hand.
  auto p = leaf({0.3});
  AdamW<double> opt(P{{"p", &p}}, {.lr = 0.01, .beta1 = 0.8, .beta2 = 0.9, .eps = 1e-3, .weight_decay = 0.1});
  set_grad(p, {1.0});
  opt.step();
  double w = 0.3 * (1 - 0.001);
  double m = 0.2 * 1.0, v = 0.1 * 1.0;
  w += -(0.01 / 0.2) * m / (std::sqrt(v) / std::sqrt(0.1) + 1e-3);
  REQUIRE(p.value().item() == Approx(w).epsilon(1e-14));
  set_grad(p, {-0.5});
  opt.step();
  w *= 1 - 0.001;
  m = 0.8 * m + 0.2 * -0.5;
  v = 0.9 * v + 0.1 * 0.25;
  w += -(0.01 / (1 - 0.64)) * m / (std::sqrt(v) / std::sqrt(1 - 0.81) + 1e-3);
  REQUIRE(p.value().item() == Approx(w).epsilon(1e-14));
}

TEST_CASE("AdamW: groups keep their own lr and weight decay", "[optim][adamw]") {
  auto a = leaf({1.0}), b = leaf({1.0}), c = leaf({2.0});
  AdamW<double> opt({{P{{"a", &a}}, 0.1}, {P{{"b", &b}}, 0.01, 0.0}, {P{{"c", &c}}, 0.1, 0.5}},
                    {.lr = 1.0, .weight_decay = 0.01});
  REQUIRE(opt.param_groups().size() == 3);
  REQUIRE(opt.param_groups()[1].lr == 0.01);
  REQUIRE(opt.param_groups()[0].weight_decay == 0.01);  // the default
  set_grad(a, {1.0});
  set_grad(b, {1.0});
  set_grad(c, {0.0});  // zero gradient: m = v = 0, the update is 0 / eps = 0, only the decay acts
  opt.step();
  // First step with m_hat = g = 1 and sqrt(v_hat) = 1: the update is lr / (1 + eps).
  REQUIRE(a.value().item() == Approx(1.0 * (1 - 0.1 * 0.01) - 0.1 / (1 + 1e-8)).epsilon(1e-14));
  REQUIRE(b.value().item() == Approx(1.0 - 0.01 / (1 + 1e-8)).epsilon(1e-14));
  REQUIRE(c.value().item() == 2.0 * (1 - 0.1 * 0.5));
}

TEST_CASE("AdamW: parameters without a grad are skipped", "[optim][adamw]") {
  auto a = leaf({1.0}), b = leaf({1.0});
  AdamW<double> opt(P{{"a", &a}, {"b", &b}}, {.lr = 0.1, .eps = 0.0, .weight_decay = 0.5});
  set_grad(a, {1.0});
  opt.step();
  opt.step();
  REQUIRE(b.value().item() == 1.0);  // no decay either: torch skips the parameter entirely
  REQUIRE(opt.state(1).step == 0);
  REQUIRE_FALSE(opt.state(1).buffers[0].defined());
  REQUIRE(opt.state(0).step == 2);
  set_grad(b, {-1.0});
  opt.step();  // b's first step: bias correction of step 1, so it moves by exactly lr
  REQUIRE(opt.state(1).step == 1);
  REQUIRE(b.value().item() == Approx(1.0 * 0.95 + 0.1).epsilon(1e-14));
  opt.zero_grad();
  REQUIRE_FALSE(a.grad().defined());
  REQUIRE_FALSE(b.grad().defined());
}

TEST_CASE("AdamW: zero-filled gradients (torch 1.13's zero_grad) still step", "[optim][adamw]") {
  auto a = leaf({1.0}), b = leaf({1.0});
  AdamW<double> opt(P{{"a", &a}, {"b", &b}}, {.lr = 0.1, .eps = 0.0, .weight_decay = 0.5});
  set_grad(a, {1.0});
  set_grad(b, {1.0});
  opt.step();
  opt.zero_grad(false);
  REQUIRE(b.grad().item() == 0.0);
  set_grad(a, {1.0});  // b gets no new gradient, but keeps its zero one
  double before = b.value().item();
  opt.step();
  REQUIRE(opt.state(1).step == 2);
  // m = 0.09, v = 0.000999 after the zero gradient: b keeps moving by its momentum.
  double m = 0.09 / (1 - 0.81), v = 0.000999 / (1 - 0.998001);
  REQUIRE(b.value().item() == Approx(before * 0.95 - 0.1 * m / std::sqrt(v)).epsilon(1e-12));
  opt.param_groups()[0].params.pop_back();
  REQUIRE_THROWS_WITH(opt.step(), Catch::Contains("groups must not change after construction"));
}

TEST_CASE("AdamW: float tensors large enough to run in parallel match a serial double loop",
          "[optim][adamw]") {
  const int64_t n = (int64_t(1) << 16) + 3;
  Rng rng(7);
  Var<float> p(rng.normal_tensor<float>({n}), true);
  auto start = p.value().clone();
  AdamW<float> opt(std::vector<NamedParameter<float>>{{"p", &p}}, {.lr = 1e-2, .weight_decay = 1e-2});
  std::vector<double> w(start.data(), start.data() + n), m(n, 0), v(n, 0);
  for (int s = 1; s <= 3; ++s) {
    auto g = rng.normal_tensor<float>({n});
    p.zero_grad();
    mul(p, constant(g)).backward(Tensor<float>::ones({n}));
    opt.step();
    double bc1 = 1 - std::pow(0.9, s), bc2 = 1 - std::pow(0.999, s);
    for (int64_t i = 0; i < n; ++i) {
      double gi = g.data()[i];
      w[i] *= 1 - 1e-4;
      m[i] = 0.9 * m[i] + 0.1 * gi;
      v[i] = 0.999 * v[i] + 0.001 * gi * gi;
      w[i] -= 1e-2 / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + 1e-8);
    }
  }
  auto expect = Tensor<double>::from({n}, w);
  REQUIRE_ALLCLOSE(p.value(), expect, 1e-5, 1e-6);
}

TEST_CASE("optimizer argument errors", "[optim]") {
  auto a = leaf({1.0});
  auto b = leaf({1.0});
  REQUIRE_THROWS_WITH(AdamW<double>(P{{"a", &a}, {"a", &b}}), Catch::Contains("'a' appears more than once"));
  REQUIRE_THROWS_WITH(AdamW<double>({{P{{"a", &a}}}, {P{{"b", &a}}}}), Catch::Contains("'b' is already in a parameter group"));
  REQUIRE_THROWS_WITH(AdamW<double>(P{{"a", &a}}, {.lr = -1}), Catch::Contains("invalid learning rate -1"));
  REQUIRE_THROWS_WITH(AdamW<double>(P{{"a", &a}}, {.beta2 = 1.0}), Catch::Contains("invalid beta2"));
  REQUIRE_THROWS_WITH(SGD<double>(P{{"a", &a}}, {.nesterov = true}), Catch::Contains("nesterov"));
  REQUIRE_THROWS_WITH(AdamW<double>(std::vector<ParamGroupSpec<double>>{}), Catch::Contains("no parameter groups"));
  REQUIRE_THROWS_WITH(SGD<double>(P{}), Catch::Contains("SGD: got an empty parameter list"));
  auto y = a * 2.0;
  REQUIRE_THROWS_WITH(AdamW<double>(P{{"y", &y}}), Catch::Contains("'y' is not a leaf"));
}

TEST_CASE("SGD: momentum, weight decay, nesterov, dampening by hand", "[optim][sgd]") {
  SECTION("momentum 0.9 and weight decay 0.1") {
    auto p = leaf({1.0});
    SGD<double> opt(P{{"p", &p}}, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1});
    set_grad(p, {0.5});
    opt.step();  // d = 0.5 + 0.1 = 0.6, buf = d (first step, no dampening)
    REQUIRE(p.value().item() == Approx(0.94).epsilon(1e-14));
    opt.step();  // d = 0.5 + 0.094 = 0.594, buf = 0.54 + 0.594 = 1.134
    REQUIRE(opt.state(0).buffers[0].item() == Approx(1.134).epsilon(1e-14));
    REQUIRE(p.value().item() == Approx(0.94 - 0.1134).epsilon(1e-14));
  }
  SECTION("nesterov") {
    auto p = leaf({1.0});
    SGD<double> opt(P{{"p", &p}}, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1, .nesterov = true});
    set_grad(p, {0.5});
    opt.step();  // d = 0.6, buf = 0.6, d = 0.6 + 0.9 * 0.6 = 1.14
    REQUIRE(p.value().item() == Approx(0.886).epsilon(1e-14));
  }
  SECTION("dampening applies from the second step") {
    auto p = leaf({1.0});
    SGD<double> opt(P{{"p", &p}}, {.lr = 1.0, .momentum = 0.5, .dampening = 0.5});
    set_grad(p, {1.0});
    opt.step();  // buf = 1
    opt.step();  // buf = 0.5 + 0.5 * 1 = 1
    REQUIRE(p.value().item() == Approx(-1.0).epsilon(1e-14));
  }
  SECTION("plain SGD, groups, skip without grad") {
    auto a = leaf({1.0, 2.0}), b = leaf({1.0}), c = leaf({5.0});
    SGD<double> opt({{P{{"a", &a}, {"c", &c}}}, {P{{"b", &b}}, 1.0}}, {.lr = 0.1});
    set_grad(a, {1.0, -1.0});
    set_grad(b, {1.0});
    opt.step();
    REQUIRE(a.value().at({0}) == Approx(0.9).epsilon(1e-14));
    REQUIRE(a.value().at({1}) == Approx(2.1).epsilon(1e-14));
    REQUIRE(b.value().item() == 0.0);
    REQUIRE(c.value().item() == 5.0);
    REQUIRE_FALSE(opt.state(0).buffers[0].defined());  // no momentum, no buffer
  }
}

TEST_CASE("StepLR sets every group's lr from its base lr", "[optim][schedule]") {
  auto a = leaf({1.0}), b = leaf({1.0});
  AdamW<double> opt({{P{{"a", &a}}, 1.0}, {P{{"b", &b}}, 0.1}});
  StepLR<double> sched(opt, 2, 0.5);
  std::vector<double> expect_a{1, 1, 0.5, 0.5, 0.25, 0.25, 0.125};
  for (int e = 0; e < 7; ++e) {
    REQUIRE(sched.epoch() == e);
    REQUIRE(opt.param_groups()[0].lr == expect_a[size_t(e)]);
    sched.step();
  }
  // The same double bits as torch's chained `lr * gamma` at each boundary.
  REQUIRE(opt.param_groups()[1].lr == 0.1 * 0.5 * 0.5 * 0.5);
  REQUIRE(opt.param_groups()[1].initial_lr == 0.1);
  sched.set_epoch(1);
  REQUIRE(opt.param_groups()[1].lr == 0.1);
  REQUIRE_THROWS_WITH(StepLR<double>(opt, 0), Catch::Contains("step_size must be positive"));
  REQUIRE_THROWS_WITH(sched.set_epoch(-1), Catch::Contains("epoch must be >= 0"));
}

TEST_CASE("StepLR with DETR's settings", "[optim][schedule]") {
  Var<float> w(Tensor<float>::zeros({2}), true);
  AdamW<float> opt({{std::vector<NamedParameter<float>>{{"w", &w}}, 1e-5}}, {.lr = 1e-4});
  StepLR<float> sched(opt, 200, 0.1);
  sched.set_epoch(199);
  REQUIRE(opt.param_groups()[0].lr == 1e-5);
  sched.step();
  REQUIRE(opt.param_groups()[0].lr == 1e-5 * 0.1);
}

TEST_CASE("clip_grad_norm: total L2 norm and scaling", "[optim][clip]") {
  auto a = leaf({3.0, 0.0}), b = leaf({4.0}), c = leaf({7.0});
  set_grad(a, {3.0, 0.0});
  set_grad(b, {4.0});
  P params{{"a", &a}, {"b", &b}, {"c", &c}};  // c has no grad: ignored
  double total = clip_grad_norm(params, 1.0);
  REQUIRE(total == 5.0);
  double coef = 1.0 / (5.0 + 1e-6);
  REQUIRE(a.grad().at({0}) == Approx(3.0 * coef).epsilon(1e-15));
  REQUIRE(b.grad().item() == Approx(4.0 * coef).epsilon(1e-15));
  REQUIRE_FALSE(c.grad().defined());
  // Below max_norm nothing changes, and the norm is still reported.
  total = clip_grad_norm(params, 10.0);
  REQUIRE(total == Approx(1.0).epsilon(1e-6));
  REQUIRE(b.grad().item() == Approx(4.0 * coef).epsilon(1e-15));
  P none{{"c", &c}};
  REQUIRE(clip_grad_norm(none, 1.0) == 0.0);
}

TEST_CASE("clip_grad_norm: other norm types", "[optim][clip]") {
  auto a = leaf({0, 0}), b = leaf({0});
  P params{{"a", &a}, {"b", &b}};
  set_grad(a, {3.0, -6.0});
  set_grad(b, {4.0});
  REQUIRE(clip_grad_norm(params, 100.0, INFINITY) == 6.0);
  REQUIRE(clip_grad_norm(params, 100.0, 1.0) == Approx(13.0).epsilon(1e-14));
  REQUIRE(clip_grad_norm(params, 100.0, 3.0) == Approx(std::cbrt(27.0 + 216.0 + 64.0)).epsilon(1e-14));
  REQUIRE_THROWS_WITH(clip_grad_norm(params, 1.0, 0.0), Catch::Contains("norm_type must be > 0"));
  clip_grad_norm(params, 3.0, INFINITY);
  REQUIRE(a.grad().at({1}) == Approx(-3.0).epsilon(1e-6));
}

TEST_CASE("clip_grad_norm: gradients sharing one buffer are scaled once", "[optim][clip]") {
  auto a = leaf({1.0, 2.0}), b = leaf({3.0, 4.0});
  (a + b).backward(Tensor<double>::from({2}, {3.0, 4.0}));  // both grads are the same tensor
  REQUIRE(a.grad().shares_storage_with(b.grad()));
  double total = clip_grad_norm(P{{"a", &a}, {"b", &b}}, 1.0);
  REQUIRE(total == Approx(std::sqrt(50.0)).epsilon(1e-15));
  double coef = 1.0 / (std::sqrt(50.0) + 1e-6);
  for (auto* v : {&a, &b}) {
    REQUIRE(v->grad().at({0}) == Approx(3.0 * coef).epsilon(1e-15));
    REQUIRE(v->grad().at({1}) == Approx(4.0 * coef).epsilon(1e-15));
  }
}

TEST_CASE("clip_grad_norm: non-finite norms", "[optim][clip]") {
  auto a = leaf({0, 0}), b = leaf({0});
  P params{{"a", &a}, {"b", &b}};
  set_grad(a, {1.0, 2.0});
  set_grad(b, {NAN});
  REQUIRE_THROWS_WITH(clip_grad_norm(params, 1.0, 2.0, true),
                      Catch::Contains("is nan") && Catch::Contains("first non-finite gradient norm: 'b'"));
  REQUIRE(a.grad().at({0}) == 1.0);  // the error leaves the gradients alone
  // Without the error option torch scales by the NaN coefficient: every gradient becomes NaN.
  REQUIRE(std::isnan(clip_grad_norm(params, 1.0)));
  REQUIRE(std::isnan(a.grad().at({0})));
  // An infinite gradient gives coefficient 0: finite gradients become 0, the infinite one NaN.
  set_grad(a, {1.0, 2.0});
  set_grad(b, {INFINITY});
  REQUIRE_THROWS_WITH(clip_grad_norm(params, 1.0, INFINITY, true), Catch::Contains("is inf"));
  REQUIRE(std::isinf(clip_grad_norm(params, 1.0)));
  REQUIRE(a.grad().at({1}) == 0.0);
  REQUIRE(std::isnan(b.grad().item()));
  // Float overflow of the sum of squares with finite gradients is reported too.
  Var<float> f(Tensor<float>::zeros({2}), true);
  mul(f, constant(Tensor<float>::from({2}, {3e38f, 3e38f}))).backward(Tensor<float>::ones({2}));
  REQUIRE_THROWS_WITH(clip_grad_norm(std::vector<NamedParameter<float>>{{"f", &f}}, 1.0, 2.0, true),
                      Catch::Contains("first non-finite gradient norm: 'f'"));
}

TEST_CASE("clip_grad_norm: large gradients give the same bits as a serial sum", "[optim][clip]") {
  const int64_t n = (int64_t(1) << 17) + 5;
  Rng rng(3);
  Var<float> p(Tensor<float>::zeros({n}), true);
  auto g = rng.normal_tensor<float>({n});
  mul(p, constant(g)).backward(Tensor<float>::ones({n}));
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(g.data()[i]) * double(g.data()[i]);
  float total = clip_grad_norm(std::vector<NamedParameter<float>>{{"p", &p}}, 1e9);
  REQUIRE(total == Approx(std::sqrt(s)).epsilon(1e-6));
  float again = clip_grad_norm(std::vector<NamedParameter<float>>{{"p", &p}}, 1e9);
  REQUIRE(std::memcmp(&total, &again, sizeof(float)) == 0);
}

namespace {
// Runs five steps of `opt` on the stored gradients and requires torch's values bit for bit.
template <class Opt, class Options>
void check_against_torch(const std::string& name, const Options& options) {
  auto ref = io::SafetensorsFile::load(std::string(DETR_TEST_DATA_DIR) + "/optim_steps.safetensors");
  Var<float> a(ref.get<float>("a.init"), true), b(ref.get<float>("b.init"), true);  // [1003], [37]
  using NP = std::vector<NamedParameter<float>>;
  Opt opt({{NP{{"a", &a}}}, {NP{{"b", &b}}, 3e-3, 0.0}}, options);
  for (int s = 1; s <= 5; ++s) {
    std::string step = std::to_string(s);
    a.mutable_grad() = ref.get<float>("grad" + step + ".a");
    if (ref.contains("grad" + step + ".b")) b.mutable_grad() = ref.get<float>("grad" + step + ".b");
    else b.zero_grad();
    opt.step();
    for (auto [p, n] : {std::pair{&a, "a"}, std::pair{&b, "b"}}) {
      auto want = ref.get<float>(name + "." + n + ".step" + step);
      INFO(name << " step " << s << " parameter " << n);
      REQUIRE_ALLCLOSE(p->value(), want, 0.0, 0.0);
      REQUIRE(std::memcmp(p->value().data(), want.data(), sizeof(float) * size_t(want.numel())) == 0);
    }
  }
}
}  // namespace

TEST_CASE("AdamW and SGD reproduce torch bit for bit on fixed gradients", "[optim][parity]") {
  // tests/reference/make_optim_steps.py; lengths 1003 and 37 exercise the vector tails, and b
  // has no gradient at step 2.
  check_against_torch<AdamW<float>>("adamw", AdamWOptions{.lr = 1e-3, .weight_decay = 1e-2});
  check_against_torch<SGD<float>>("sgd_momentum", SGDOptions{.lr = 1e-2, .momentum = 0.9, .weight_decay = 1e-2});
  check_against_torch<SGD<float>>("sgd_nesterov",
                                  SGDOptions{.lr = 1e-2, .momentum = 0.9, .weight_decay = 1e-2, .nesterov = true});
  check_against_torch<SGD<float>>("sgd_dampening", SGDOptions{.lr = 1e-2, .momentum = 0.5, .dampening = 0.3});
}

TEST_CASE("optimizer steps and clipping give the same bits on 1 and 2 threads", "[optim]") {
  const int64_t n = (int64_t(1) << 17) + 11;  // above the parallel threshold, odd tail
  Rng rng(11);
  auto init = rng.normal_tensor<float>({n}), grad = rng.normal_tensor<float>({n}, 0.0, 3.0);
  auto run = [&](int threads, auto make_opt) {
    int before = detr::num_threads();
    detr::set_num_threads(threads);
    Var<float> p(init.clone(), true);
    std::vector<NamedParameter<float>> params{{"p", &p}};
    auto opt = make_opt(params);
    float norm = 0;
    for (int s = 0; s < 3; ++s) {
      p.mutable_grad() = grad.clone();
      norm = clip_grad_norm(params, 1.0);
      opt->step();
    }
    detr::set_num_threads(before);
    return std::pair{p.value(), norm};
  };
  auto adamw = [](auto& ps) { return std::make_unique<AdamW<float>>(ps, AdamWOptions{.lr = 1e-2}); };
  auto sgd = [](auto& ps) { return std::make_unique<SGD<float>>(ps, SGDOptions{.lr = 1e-2, .momentum = 0.9, .weight_decay = 1e-4}); };
  for (int k = 0; k < 2; ++k) {
    auto [one, norm1] = k == 0 ? run(1, adamw) : run(1, sgd);
    auto [two, norm2] = k == 0 ? run(2, adamw) : run(2, sgd);
    REQUIRE(std::memcmp(&norm1, &norm2, sizeof(float)) == 0);
    REQUIRE(std::memcmp(one.data(), two.data(), sizeof(float) * size_t(n)) == 0);
  }
}
