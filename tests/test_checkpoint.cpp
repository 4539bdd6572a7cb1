#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "detr/io/checkpoint.hpp"
#include "detr/nn/dropout.hpp"
#include "detr/nn/linear.hpp"
#include "detr/ops/elementwise.hpp"
#include "detr/optim/adamw.hpp"
#include "detr/optim/clip.hpp"
#include "detr/optim/schedule.hpp"
#include "detr/optim/sgd.hpp"
#include "data_helpers.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::same_bits;

namespace {

// A two-layer MLP plus a parameter that never receives a gradient (its optimizer state must stay
// empty across a resume).
template <int Hidden = 8>
struct Net {
  using Scalar = float;
  Linear<4, Hidden> fc1;
  Linear<Hidden, 3> fc2;
  Var<float> unused = parameter<float>({2});  // [2]

  void init(Rng& rng) {
    fc1.init(rng);
    fc2.init(rng);
    unused.mutable_value().fill_(1.5f);
  }
  template <class V>
  void visit(V& v) {
    v.child("fc1", fc1);
    v.child("fc2", fc2);
    v.param("unused", unused);
  }
  // x [B, 4] -> [B, 3]
  Var<float> forward(const Var<float>& x) const { return fc2.forward(relu(fc1.forward(x))); }
};

Net<> make_net(uint64_t seed) {
  Net<> n;
  Rng rng(seed);
  n.init(rng);
  return n;
}

std::vector<ParamGroupSpec<float>> groups(Net<>& n) {
  auto all = named_parameters(n);
  std::vector<NamedParameter<float>> first, rest;
  for (auto& p : all) (p.name.rfind("fc1.", 0) == 0 ? first : rest).push_back(p);
  return {{first, 1e-2}, {rest}};
}

// One training step on data that depends only on the step index.
template <class Opt>
void train_step(Net<>& n, Opt& opt, LRScheduler<float>& sched, int step) {
  Rng rng(1000 + uint64_t(step));
  Var<float> x(rng.normal_tensor<float>({5, 4}));
  auto target = constant(rng.normal_tensor<float>({5, 3}));
  opt.zero_grad();
  square(sub(n.forward(x), target)).backward(Tensor<float>::ones({5, 3}));
  clip_grad_norm(n, 1.0);
  opt.step();
  sched.step();
}

std::string tmp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("detr_test_checkpoint_" + name + ".safetensors")).string();
}

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}
void write_bytes(const std::string& path, const std::vector<char>& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(b.data(), std::streamsize(b.size()));
}

// Trains N steps straight, and k steps + save + load into fresh objects + N - k steps; every
// parameter, every optimizer state tensor, every lr and the epoch must agree bit for bit.
template <class Opt, class Options>
void check_bit_exact_resume(const Options& options, const std::string& file) {
  const int N = 7, k = 3;
  auto straight = make_net(1);
  Opt opt_a(groups(straight), options);
  StepLR<float> sched_a(opt_a, 2, 0.5);
  for (int s = 0; s < N; ++s) train_step(straight, opt_a, sched_a, s);

  auto first = make_net(1);
  Opt opt_b(groups(first), options);
  StepLR<float> sched_b(opt_b, 2, 0.5);
  for (int s = 0; s < k; ++s) train_step(first, opt_b, sched_b, s);
  std::string path = tmp_path(file);
  io::save_checkpoint(path, first, {&opt_b, &sched_b}, {{"epoch", std::to_string(k)}, {"note", "x y"}});

  auto resumed = make_net(99);  // different weights: the load must overwrite them all
  Opt opt_c(groups(resumed), options);
  StepLR<float> sched_c(opt_c, 2, 0.5);
  auto meta = io::load_checkpoint(path, resumed, {&opt_c, &sched_c});
  std::remove(path.c_str());
  REQUIRE(meta == io::Metadata{{"epoch", "3"}, {"note", "x y"}});
  REQUIRE(sched_c.epoch() == k);
  for (int s = std::stoi(meta.at("epoch")); s < N; ++s) train_step(resumed, opt_c, sched_c, s);

  auto pa = named_parameters(straight), pc = named_parameters(resumed);
  REQUIRE(pa.size() == pc.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].name);
    REQUIRE(same_bits(pa[i].var->value(), pc[i].var->value()));
  }
  REQUIRE(straight.fc1.weight.value().at({0, 0}) != make_net(1).fc1.weight.value().at({0, 0}));
  for (size_t i = 0; i < opt_a.num_params(); ++i) {
    INFO(pa[i].name);
    REQUIRE(opt_a.state(i).step == opt_c.state(i).step);
    for (size_t b = 0; b < 2; ++b) {
      REQUIRE(opt_a.state(i).buffers[b].defined() == opt_c.state(i).buffers[b].defined());
      if (opt_a.state(i).buffers[b].defined())
        REQUIRE(same_bits(opt_a.state(i).buffers[b], opt_c.state(i).buffers[b]));
    }
  }
  size_t unused = pa.size() - 1;
  REQUIRE(pa[unused].name == "unused");
  REQUIRE_FALSE(opt_c.state(unused).buffers[0].defined());
  REQUIRE(resumed.unused.value().at({1}) == 1.5f);
  for (size_t g = 0; g < 2; ++g) {
    REQUIRE(opt_a.param_groups()[g].lr == opt_c.param_groups()[g].lr);
    REQUIRE(opt_a.param_groups()[g].initial_lr == opt_c.param_groups()[g].initial_lr);
  }
  REQUIRE(opt_c.param_groups()[0].lr == 1e-2 * 0.5 * 0.5 * 0.5);
  REQUIRE(sched_a.epoch() == sched_c.epoch());
}

}  // namespace

TEST_CASE("checkpoint: AdamW + StepLR resume is bit-exact", "[checkpoint]") {
  check_bit_exact_resume<AdamW<float>>(AdamWOptions{.lr = 3e-3, .weight_decay = 1e-4}, "adamw");
}

TEST_CASE("checkpoint: SGD with momentum resume is bit-exact", "[checkpoint]") {
  check_bit_exact_resume<SGD<float>>(SGDOptions{.lr = 1e-2, .momentum = 0.9, .weight_decay = 1e-4}, "sgd");
}

TEST_CASE("checkpoint: model only, official names, loadable with load_state_dict", "[checkpoint]") {
  auto a = make_net(1), b = make_net(2);
  std::string path = tmp_path("model_only");
  io::save_checkpoint(path, a);
  REQUIRE(io::load_checkpoint(path, b).empty());
  REQUIRE(same_bits(a.fc2.bias.value(), b.fc2.bias.value()));
  auto f = io::SafetensorsFile::load(path);
  REQUIRE(f.contains("model.fc1.weight"));
  auto c = make_net(3);
  load_state_dict(c, f, true, "model.");
  REQUIRE(same_bits(a.fc1.weight.value(), c.fc1.weight.value()));
  // Asking for optimizer state a model-only checkpoint does not hold is an error.
  AdamW<float> opt(groups(b));
  REQUIRE_THROWS_WITH(io::load_checkpoint(path, b, {&opt}), Catch::Contains("holds no optimizer state"));
  std::remove(path.c_str());
}

TEST_CASE("checkpoint: truncated, corrupt and foreign files name the file", "[checkpoint]") {
  auto net = make_net(1);
  AdamW<float> opt(groups(net));
  StepLR<float> sched(opt, 2);
  train_step(net, opt, sched, 0);
  std::string path = tmp_path("good"), bad = tmp_path("bad");
  io::save_checkpoint(path, net, {&opt, &sched});
  auto bytes = read_bytes(path);
  auto fresh = make_net(5);
  auto before = fresh.fc1.weight.value().clone();

  SECTION("truncated") {
    for (size_t keep : {size_t(4), size_t(100), bytes.size() - 1}) {
      write_bytes(bad, std::vector<char>(bytes.begin(), bytes.begin() + int64_t(keep)));
      REQUIRE_THROWS_WITH(io::load_checkpoint(bad, fresh), Catch::Contains("'" + bad + "'"));
    }
  }
  SECTION("a flipped byte in the tensor data") {
    auto b = bytes;
    b[b.size() - 3] ^= 0x10;
    write_bytes(bad, b);
    REQUIRE_THROWS_WITH(io::load_checkpoint(bad, fresh),
                        Catch::Contains("'" + bad + "' is corrupt: checksum"));
  }
  SECTION("a changed metadata value") {
    std::string s(bytes.begin(), bytes.end());
    auto at = s.find("\"scheduler.epoch\":\"1\"");
    REQUIRE(at != std::string::npos);
    s[at + std::strlen("\"scheduler.epoch\":\"")] = '7';
    write_bytes(bad, std::vector<char>(s.begin(), s.end()));
    REQUIRE_THROWS_WITH(io::load_checkpoint(bad, fresh, {&opt, &sched}),
                        Catch::Contains("'" + bad + "' is corrupt"));
  }
  SECTION("a broken header") {
    auto b = bytes;
    b[8] = 'x';  // the opening brace of the JSON header
    write_bytes(bad, b);
    REQUIRE_THROWS_WITH(io::load_checkpoint(bad, fresh), Catch::Contains("'" + bad + "'") &&
                                                             Catch::Contains("malformed JSON header"));
  }
  SECTION("a plain state_dict file is not a checkpoint") {
    save_state_dict(net, bad);
    REQUIRE_THROWS_WITH(io::load_checkpoint(bad, fresh), Catch::Contains("'" + bad + "' is not a DETR++ checkpoint"));
  }
  SECTION("a missing file") {
    REQUIRE_THROWS_WITH(io::load_checkpoint(bad + ".none", fresh), Catch::Contains("cannot open '" + bad + ".none'"));
  }
  REQUIRE(same_bits(fresh.fc1.weight.value(), before));  // a failed load changes nothing
  std::remove(path.c_str());
  std::remove(bad.c_str());
}

TEST_CASE("checkpoint: mismatched models and optimizers name the tensor or group", "[checkpoint]") {
  auto net = make_net(1);
  AdamW<float> opt(groups(net));
  StepLR<float> sched(opt, 2);
  train_step(net, opt, sched, 0);
  std::string path = tmp_path("mismatch");
  io::save_checkpoint(path, net, {&opt, &sched});

  SECTION("a tensor of another shape") {
    Net<9> wide;
    Rng rng(1);
    wide.init(rng);
    auto before = wide.fc2.weight.value().clone();
    REQUIRE_THROWS_WITH(io::load_checkpoint(path, wide),
                        Catch::Contains("model tensor 'model.fc1.bias' has shape [8], expected [9]"));
    REQUIRE(same_bits(wide.fc2.weight.value(), before));
  }
  SECTION("another optimizer type") {
    auto other = make_net(2);
    SGD<float> sgd(groups(other));
    REQUIRE_THROWS_WITH(io::load_checkpoint(path, other, {&sgd}), Catch::Contains("holds AdamW state, the optimizer is SGD"));
  }
  SECTION("other parameter groups") {
    auto other = make_net(2);
    AdamW<float> one_group(named_parameters(other));
    REQUIRE_THROWS_WITH(io::load_checkpoint(path, other, {&one_group}), Catch::Contains("has 2 optimizer parameter groups, the optimizer 1"));
    auto g = groups(other);
    std::swap(g[0], g[1]);
    AdamW<float> swapped(g);
    REQUIRE_THROWS_WITH(io::load_checkpoint(path, other, {&swapped}),
                        Catch::Contains("optimizer group 0 holds parameters [fc1.weight,fc1.bias]"));
    REQUIRE(swapped.state(0).step == 0);
  }
  std::remove(path.c_str());
}

TEST_CASE("check_finite names the first tensor holding NaN or infinity", "[checkpoint][nan]") {
  Net<> n = make_net(3);
  check_finite(n, "fresh.safetensors");  // no throw
  n.fc2.weight.mutable_value().data()[4] = std::numeric_limits<float>::infinity();
  n.fc2.weight.mutable_value().data()[5] = std::numeric_limits<float>::quiet_NaN();
  REQUIRE_THROWS_WITH(check_finite(n, "run/epoch_0007.safetensors"),
                      Catch::Contains("run/epoch_0007.safetensors: tensor 'fc2.weight' [3, 8] holds 2 non-finite values") &&
                          Catch::Contains("flat index 4, is inf") && Catch::Contains("diverged"));
}

namespace {
// A layer with N dropout streams and a parameter, to check that checkpoints carry the streams.
template <int N>
struct Dropping {
  using Scalar = float;
  Linear<4, 4> fc;
  std::array<Dropout<float>, N> drops;
  void init(Rng& rng) {
    fc.init(rng);
    for (auto& d : drops) d.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("fc", fc);
    for (auto& d : drops) v.child("", d);
  }
  Var<float> forward(const Var<float>& x) {
    Var<float> y = fc.forward(x);
    for (auto& d : drops) y = d.forward(y);
    return y;
  }
};
}  // namespace

TEST_CASE("checkpoints carry the dropout streams: a reloaded model draws the same masks", "[checkpoint][random]") {
  test::TempDir dir;
  Dropping<2> a;
  Rng rng(1);
  a.init(rng);
  train(a);
  Var<float> x(Tensor<float>::ones({64, 4}));
  for (int i = 0; i < 3; ++i) a.forward(x);  // the streams have moved on from their seeds
  io::save_checkpoint(dir / "d.safetensors", a);
  Dropping<2> b;
  Rng other(2);
  b.init(other);
  train(b);
  io::load_checkpoint(dir / "d.safetensors", b);
  REQUIRE(random_streams(b).size() == 2);
  REQUIRE(same_bits(a.forward(x).value(), b.forward(x).value()));

  // A model with another number of streams is refused.
  Dropping<1> one;
  one.init(rng);
  REQUIRE_THROWS_WITH(io::load_checkpoint(dir / "d.safetensors", one),
                      Catch::Contains("holds 2 random streams (dropout), the model has 1"));
}
