// Tutorial: a transformer encoder, built from DETR++ layer types, learns to reverse sequences.
//
// It walks through what every DETR++ model does: declare the model as a type whose sizes are
// template arguments, initialise it from a seed, run forward, compute a loss, backward, clip
// the gradients, take an AdamW step, decay the learning rate, save a checkpoint and load it back.
//
//   ./build/examples/reverse_sequence --steps 400
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "detr/detr.hpp"

using namespace detr;

// 1. A layer is a struct template: members are parameters and sublayers; `visit` names them
//    as PyTorch would (this is DETR's post-norm TransformerEncoderLayer without positions).
template <int D, int H, int F>
struct EncoderLayer {
  using Scalar = float;
  MultiheadAttention<D, H> self_attn;
  Dropout<> dropout1;
  LayerNorm<D> norm1;
  FFN<D, F, "norm2"> ffn;

  void init(Rng& rng) {
    self_attn.init(rng);
    dropout1.init(rng);
    norm1.init(rng);
    ffn.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("self_attn", self_attn);
    v.child("", dropout1);
    v.child("norm1", norm1);
    v.child("", ffn);  // linear1, linear2, norm2 sit on the layer itself
  }
  Var<float> forward(const Var<float>& x) {  // [B, L, D] -> [B, L, D]
    Var<float> x1 = norm1.forward(x + dropout1.forward(self_attn.forward(x, x, x)));
    return ffn.forward(x1);
  }
};

// 2. The model: token + position embeddings, a stack of encoder layers, a classifier head.
template <int Vocab, int Len, int D, int H, int Layers>
struct Reverser {
  using Scalar = float;
  Embedding<Vocab, D> tokens;
  Embedding<Len, D> positions;
  Repeat<Layers, EncoderLayer<D, H, 4 * D>> layers;
  Linear<D, Vocab> head;

  void init(Rng& rng) {
    tokens.init(rng);
    positions.init(rng);
    layers.init(rng);
    head.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("tokens", tokens);
    v.child("positions", positions);
    v.child("layers", layers);
    v.child("head", head);
  }
  // seq [B, Len] token ids -> logits [B, Len, Vocab]
  Var<float> forward(const Tensor<int64_t>& seq) {
    Var<float> x = tokens.forward(seq) + positions.weight;  // [B, Len, D] + [Len, D]
    for (auto& layer : layers) x = layer.forward(x);
    return head.forward(x);
  }
};

constexpr int kVocab = 16, kLen = 10;
using Model = Reverser<kVocab, kLen, 64, 4, 2>;

// A batch of random sequences and their reversals.
void make_batch(Rng& rng, int64_t B, Tensor<int64_t>& seq, Tensor<int64_t>& target) {
  seq = Tensor<int64_t>::empty({B, kLen});
  target = Tensor<int64_t>::empty({B, kLen, 1});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < kLen; ++i) seq.at({b, i}) = rng.randint(0, kVocab - 1);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < kLen; ++i) target.at({b, i, 0}) = seq.at({b, kLen - 1 - i});
}

// Cross-entropy: the mean over positions of -log p(target).
Var<float> cross_entropy(const Var<float>& logits, const Tensor<int64_t>& target) {
  return -mean(gather(log_softmax(logits), -1, target));
}

double accuracy(Model& model, const Tensor<int64_t>& seq, const Tensor<int64_t>& target) {
  NoGrad no_grad;  // inference: nothing is recorded
  auto logits = model.forward(seq).value();
  int64_t right = 0;
  for (int64_t r = 0; r < target.numel(); ++r) {
    const float* row = logits.data() + r * kVocab;
    right += std::max_element(row, row + kVocab) - row == target.data()[r];
  }
  return double(right) / double(target.numel());
}

int main(int argc, char** argv) {
  CLI::App app{"Train a 2-layer transformer encoder to reverse sequences of 10 tokens."};
  int steps = 400, batch = 64;
  uint64_t seed = 0;
  double lr = 1e-3;
  std::string checkpoint = "reverse_sequence.ckpt";
  double min_accuracy = 0.0;
  app.add_option("--steps", steps, "number of AdamW steps")->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "sequences per step")->check(CLI::PositiveNumber);
  app.add_option("--lr", lr, "AdamW learning rate (decayed x0.1 at 75% of the steps)");
  app.add_option("--seed", seed, "seed for initialisation, dropout and data");
  app.add_option("--checkpoint", checkpoint, "where to save the trained model and optimizer");
  app.add_option("--min-accuracy", min_accuracy, "exit with status 1 if held-out accuracy ends below this");
  CLI11_PARSE(app, argc, argv);

  // 3. Initialise from one seed; the count of parameters comes from the type's visit().
  Rng rng(seed);
  Model model;
  model.init(rng);
  std::printf("model: %lld parameters\n", (long long)num_parameters(model));

  // 4. AdamW with weight decay, a step schedule, gradient clipping as DETR trains.
  AdamWOptions opt;
  opt.lr = lr;
  opt.weight_decay = 1e-4;
  AdamW<float> optimizer(named_parameters(model), opt);
  StepLR<float> schedule(optimizer, std::max(1, steps * 3 / 4));

  Tensor<int64_t> test_seq, test_target;
  Rng test_rng(seed + 1000);
  make_batch(test_rng, 256, test_seq, test_target);

  auto t0 = std::chrono::steady_clock::now();
  for (int step = 1; step <= steps; ++step) {
    Tensor<int64_t> seq, target;
    make_batch(rng, batch, seq, target);
    train(model);
    Var<float> loss = cross_entropy(model.forward(seq), target);  // forward
    optimizer.zero_grad();
    loss.backward();                                               // backward
    clip_grad_norm(model, 1.0);                                    // clip
    optimizer.step();                                              // update
    schedule.step();
    if (step % 50 == 0 || step == steps) {
      eval(model);
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("step %4d  loss %.4f  held-out token accuracy %.3f  (%.1f steps/s)\n", step,
                  double(loss.item()), accuracy(model, test_seq, test_target), step / secs);
    }
  }

  // 5. Save everything needed to resume, load it into a fresh model, check it agrees.
  io::save_checkpoint(checkpoint, model, {&optimizer, &schedule}, {{"steps", std::to_string(steps)}});
  Model restored;
  io::load_checkpoint(checkpoint, restored);
  eval(model);
  eval(restored);
  double a = accuracy(model, test_seq, test_target), b = accuracy(restored, test_seq, test_target);
  std::printf("checkpoint %s reloaded: accuracy %.3f (trained model %.3f)\n", checkpoint.c_str(), b, a);
  if (a != b) std::printf("FAILED: the reloaded model disagrees with the trained one\n");
  if (a < min_accuracy) std::printf("FAILED: accuracy %.3f is below --min-accuracy %.3f\n", a, min_accuracy);
  return a == b && a >= min_accuracy ? 0 : 1;
}
