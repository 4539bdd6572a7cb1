#pragma once
// The layer contract. A layer is a struct template whose members are its parameters and
// sublayers; sizes that fix shapes are template arguments. It provides
//
//   using Scalar = T;
//   void init(Rng& rng);               // the reference initialisation
//   template <class V> void visit(V& v) {
//     v.param("weight", weight);       // Var<T>, trained
//     v.buffer("running_mean", mean);  // Tensor<T>, saved but not trained
//     v.child("linear1", linear1);     // a sublayer: its names get the prefix "linear1."
//     v.child("", ffn);                // a sublayer whose names join the parent's directly
//     v.mode(training);                // bool: train / eval behaviour (dropout, batch norm)
//     v.random(rng);                   // Rng: a random stream (dropout), saved in checkpoints
//   }
//
// and a forward(...) with named, typed arguments. Names follow the official PyTorch state_dict
// keys, so checkpoints convert one to one. The free functions below walk any layer.
#include <cmath>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "detr/autograd/var.hpp"
#include "detr/core/rng.hpp"
#include "detr/io/safetensors.hpp"

namespace detr {

namespace internal {
// A visitor that accepts every call; used to state the Module concept.
template <class T>
struct ProbeVisitor {
  void param(std::string_view, Var<T>&) {}
  void buffer(std::string_view, Tensor<T>&) {}
  template <class M>
  void child(std::string_view, M&) {}
  void mode(bool&) {}
  void random(Rng&) {}
};

// An empty child name splices the child's names into the parent's (a block whose tensors the
// reference declares directly on the enclosing module, like DETR's FFN inside a layer).
inline std::string join_name(const std::string& prefix, std::string_view name) {
  if (name.empty()) return prefix;
  return prefix.empty() ? std::string(name) : prefix + "." + std::string(name);
}

template <class T, class OnParam, class OnBuffer>
struct NameVisitor {
  std::string prefix;
  OnParam& on_param;
  OnBuffer& on_buffer;
  void param(std::string_view n, Var<T>& p) { on_param(join_name(prefix, n), p); }
  void buffer(std::string_view n, Tensor<T>& b) { on_buffer(join_name(prefix, n), b); }
  template <class M>
  void child(std::string_view n, M& m) {
    NameVisitor sub{join_name(prefix, n), on_param, on_buffer};
    m.visit(sub);
  }
  void mode(bool&) {}
  void random(Rng&) {}
};

struct ModeVisitor {
  bool training;
  template <class T>
  void param(std::string_view, Var<T>&) {}
  template <class T>
  void buffer(std::string_view, Tensor<T>&) {}
  template <class M>
  void child(std::string_view, M& m) { m.visit(*this); }
  void mode(bool& flag) { flag = training; }
  void random(Rng&) {}
};

// Collects the random streams of a tree in visit order.
struct RandomStreamVisitor {
  std::vector<Rng*> streams;
  template <class T>
  void param(std::string_view, Var<T>&) {}
  template <class T>
  void buffer(std::string_view, Tensor<T>&) {}
  template <class M>
  void child(std::string_view, M& m) { m.visit(*this); }
  void mode(bool&) {}
  void random(Rng& r) { streams.push_back(&r); }
};
}  // namespace internal

template <class M>
concept Module = requires(M& m, Rng& rng, internal::ProbeVisitor<typename M::Scalar>& v) {
  typename M::Scalar;
  m.init(rng);
  m.visit(v);
};

// A trainable parameter of the given shape (zeros until init or load).
template <class T>
Var<T> parameter(const Shape& s) {
  return Var<T>(Tensor<T>::zeros(s), true);
}

// Calls f(name, Var&) for every parameter and g(name, Tensor&) for every buffer, in order.
template <Module M, class F, class G>
void for_each_tensor(M& m, F&& f, G&& g, const std::string& prefix = "") {
  internal::NameVisitor<typename M::Scalar, F, G> v{prefix, f, g};
  m.visit(v);
}

template <class T>
struct NamedParameter {
  std::string name;
  Var<T>* var;
};

template <Module M>
std::vector<NamedParameter<typename M::Scalar>> named_parameters(M& m) {
  std::vector<NamedParameter<typename M::Scalar>> out;
  for_each_tensor(m, [&](const std::string& n, Var<typename M::Scalar>& p) { out.push_back({n, &p}); },
                  [](const std::string&, Tensor<typename M::Scalar>&) {});
  return out;
}

template <Module M>
int64_t num_parameters(M& m) {
  int64_t n = 0;
  for (auto& p : named_parameters(m)) n += p.var->numel();
  return n;
}

template <Module M>
void zero_grad(M& m) {
  for (auto& p : named_parameters(m)) p.var->zero_grad();
}

// train(m) / eval(m): switch dropout and batch-norm behaviour for the whole tree.
template <Module M>
void train(M& m, bool on = true) {
  internal::ModeVisitor v{on};
  m.visit(v);
}
template <Module M>
void eval(M& m) {
  train(m, false);
}

// The random streams (dropout) of the whole tree, in a fixed order: what a checkpoint saves so
// that a resumed run draws the same masks as a run that never stopped.
template <Module M>
std::vector<Rng*> random_streams(M& m) {
  internal::RandomStreamVisitor v;
  m.visit(v);
  return v.streams;
}

// Parameters and buffers by their official names (values shared, not copied).
template <Module M>
std::map<std::string, Tensor<typename M::Scalar>> state_dict(M& m) {
  std::map<std::string, Tensor<typename M::Scalar>> out;
  for_each_tensor(m, [&](const std::string& n, Var<typename M::Scalar>& p) { out[n] = p.value(); },
                  [&](const std::string& n, Tensor<typename M::Scalar>& b) { out[n] = b; });
  return out;
}

// Throws naming the first parameter or buffer that holds a NaN or an infinity; `source` (a
// file) goes into the message. A diverged run's checkpoint would otherwise give confident
// garbage, or NaN boxes that the matcher and the evaluator reject far from the cause.
template <Module M>
void check_finite(M& m, const std::string& source) {
  using T = typename M::Scalar;
  auto check = [&](const std::string& name, const Tensor<T>& t) {
    const T* p = t.data();
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(double(p[i]))) {
        if (first < 0) first = i;
        ++bad;
      }
    DETR_CHECK(bad == 0, source << ": tensor '" << name << "' " << t.shape() << " holds " << bad
                                << " non-finite values (the first, at flat index " << first << ", is "
                                << double(p[first]) << "): the run that wrote it diverged");
  };
  for_each_tensor(m, [&](const std::string& n, Var<T>& p) { check(n, p.value()); },
                  [&](const std::string& n, Tensor<T>& b) { check(n, b); });
}

// Copies every parameter and buffer from a safetensors file (converting dtype). With strict,
// a missing or unexpected name is an error listing them; shapes must always match.
template <Module M>
void load_state_dict(M& m, const io::SafetensorsFile& file, bool strict = true,
                     const std::string& prefix = "") {
  using T = typename M::Scalar;
  std::vector<std::string> missing;
  size_t used = 0;
  auto load = [&](const std::string& n, Tensor<T>& dst) {
    std::string key = prefix + n;
    if (!file.contains(key)) {
      missing.push_back(key);
      return;
    }
    auto src = file.get<T>(key);
    DETR_CHECK(src.shape() == dst.shape(), "load_state_dict: '" << key << "' in '" << file.path()
                                                                << "' has shape " << src.shape()
                                                                << ", the model expects " << dst.shape());
    dst.copy_(src);
    ++used;
  };
  for_each_tensor(m, [&](const std::string& n, Var<T>& p) { load(n, p.mutable_value()); },
                  [&](const std::string& n, Tensor<T>& b) { load(n, b); });
  if (strict) {
    std::string msg;
    for (auto& k : missing) msg += " " + k;
    DETR_CHECK(missing.empty(), "load_state_dict: '" << file.path() << "' lacks:" << msg);
    if (prefix.empty() && used != file.names().size()) {
      auto sd = state_dict(m);
      std::string extra;
      for (auto& k : file.names())
        if (!sd.count(k)) extra += " " + k;
      DETR_FAIL("load_state_dict: '" << file.path() << "' has names the model does not:" << extra);
    }
  }
}

template <Module M>
void save_state_dict(M& m, const std::string& path) {
  io::SafetensorsWriter w;
  for (auto& [n, t] : state_dict(m)) w.add(n, t);
  w.save(path);
}

// Repeat<N, Block>: N blocks of one type, named "0", "1", ... like torch.nn.ModuleList; the
// owner names the list (a member `layers` gives "layers.0.", "layers.1.", ...).
template <int N, Module Block>
struct Repeat {
  static_assert(N >= 1, "Repeat<N, Block>: N must be at least 1");
  using Scalar = typename Block::Scalar;
  std::array<Block, N> blocks;

  static constexpr int size() { return N; }
  Block& operator[](int i) { return blocks[i]; }
  const Block& operator[](int i) const { return blocks[i]; }
  auto begin() { return blocks.begin(); }
  auto end() { return blocks.end(); }

  void init(Rng& rng) {
    for (auto& b : blocks) b.init(rng);
  }
  template <class V>
  void visit(V& v) {
    for (int i = 0; i < N; ++i) v.child(std::to_string(i), blocks[i]);
  }
};

}  // namespace detr
