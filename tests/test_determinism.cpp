// The same bits on any number of threads: a training step's outputs, losses and every
// parameter gradient of DETR and the three Deformable DETR variants (dropout on) on 1, 2 and 3
// threads. Parallel loops split work in chunks that depend on the problem only, and partial
// sums are added in chunk order (include/detr/core/parallel.hpp).
#include "detr/core/parallel.hpp"
#include "detr/loss/set_criterion.hpp"
#include "helpers.hpp"
#include "tiny_detectors.hpp"

using namespace detr;
using detr::test::same_bits;

namespace {
using test::TinyDetr;
using Plain = test::TinyDeformable;
using Refine = test::TinyDeformableRefine;
using TwoStage = test::TinyDeformableTwoStage;

struct StepResult {
  std::vector<Tensor<float>> tensors;  // outputs, losses, then gradients, in a fixed order
  std::vector<std::string> names;
};

// One training step (dropout on) of a model initialised from a fixed seed, on `threads` threads.
template <Detector M>
StepResult step_on(int threads) {
  const int before = num_threads();
  set_num_threads(threads);
  M model;
  Rng rng(5);
  model.init(rng);
  model.set_dropout(0.1);
  train(model);
  // Two images of different sizes: the second is padded (mask = 1 on its right part).
  Var<float> images(test::randn({2, 3, 96, 128}, 11).cast<float>());
  auto mask = Tensor<uint8_t>::zeros({2, 96, 128});
  for (int64_t y = 0; y < 96; ++y)
    for (int64_t x = 100; x < 128; ++x) mask.data()[(96 + y) * 128 + x] = 1;
  std::vector<BoxTarget<float>> targets(2);
  targets[0].labels = Tensor<int64_t>::from({2}, {1, 7});
  targets[0].boxes = Tensor<float>::from({2, 4}, {0.3f, 0.4f, 0.2f, 0.3f, 0.7f, 0.6f, 0.3f, 0.5f});
  targets[1].labels = Tensor<int64_t>::from({1}, {4});
  targets[1].boxes = Tensor<float>::from({1, 4}, {0.5f, 0.5f, 0.4f, 0.6f});

  SetCriterion<float> criterion(M::criterion_config(), HungarianMatcher<float>(M::matcher_config()));
  DetectorOutput<float> out = model.forward(images, mask);
  Losses<float> losses = criterion(out.layers, targets, out.encoder_ptr());
  losses.total.backward();
  StepResult r;
  r.tensors.push_back(out.final().logits.value());
  r.names.push_back("final logits");
  r.tensors.push_back(out.final().boxes.value());
  r.names.push_back("final boxes");
  r.tensors.push_back(losses.total.value());
  r.names.push_back("total loss");
  for (auto& p : named_parameters(model))
    if (p.var->grad().defined()) {
      r.tensors.push_back(p.var->grad().clone());
      r.names.push_back("grad " + p.name);
    }
  set_num_threads(before);
  return r;
}

template <Detector M>
void require_same_bits_on_any_thread_count() {
  const StepResult one = step_on<M>(1);
  REQUIRE(one.tensors.size() > 10);
  for (int threads : {2, 3}) {
    const StepResult many = step_on<M>(threads);
    REQUIRE(many.names == one.names);
    for (size_t i = 0; i < one.tensors.size(); ++i) {
      INFO(threads << " threads: " << one.names[i]);
      REQUIRE(same_bits(one.tensors[i], many.tensors[i]));
    }
  }
}
}  // namespace

TEST_CASE("DETR: a training step gives the same bits on 1, 2 and 3 threads", "[determinism]") {
  require_same_bits_on_any_thread_count<TinyDetr>();
}
TEST_CASE("Deformable DETR: the same bits on 1, 2 and 3 threads", "[determinism]") {
  require_same_bits_on_any_thread_count<Plain>();
}
TEST_CASE("+ box refinement: the same bits on 1, 2 and 3 threads", "[determinism]") {
  require_same_bits_on_any_thread_count<Refine>();
}
TEST_CASE("+ two-stage: the same bits on 1, 2 and 3 threads", "[determinism]") {
  require_same_bits_on_any_thread_count<TwoStage>();
}
