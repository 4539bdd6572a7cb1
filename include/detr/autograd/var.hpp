#pragma once
// Var<T, Device>: a tensor plus its place in the autograd graph (define-by-run, reverse mode).
//
// Every op computes its result eagerly; when grad mode is on and an input requires grad it also
// records one Node holding a hand-written backward closure next to the forward (see record()).
// backward() walks the nodes reachable from the root in reverse topological order, calls each
// closure once with the node's accumulated output gradient, then frees the graph (as PyTorch does
// without retain_graph), so saved tensors are released as soon as they are used.
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "detr/core/parallel.hpp"
#include "detr/core/cuda_tensor.hpp"
#include "detr/core/tensor.hpp"

namespace detr {

namespace internal {
inline bool& grad_mode_flag() {
  thread_local bool enabled = true;
  return enabled;
}
}  // namespace internal

inline bool grad_enabled() { return internal::grad_mode_flag(); }

// RAII guard: inside its scope ops record nothing (inference, the matcher, metrics).
class NoGrad {
 public:
  NoGrad() : prev_(internal::grad_mode_flag()) { internal::grad_mode_flag() = false; }
  ~NoGrad() { internal::grad_mode_flag() = prev_; }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool prev_;
};

template <class T, class D = cpu>
class Var;

namespace internal {

template <class T, class D>
struct Node;

// What a backward closure sees of its inputs: whether each wants a gradient, and where to add it.
template <class T, class D>
class GradSink {
 public:
  explicit GradSink(std::vector<std::shared_ptr<Node<T, D>>>& inputs) : inputs_(inputs) {}
  bool wants(size_t i) const { return i < inputs_.size() && inputs_[i]->requires_grad; }
  void add(size_t i, Tensor<T, D> g) {
    if (wants(i)) inputs_[i]->accumulate(std::move(g));
  }

 private:
  std::vector<std::shared_ptr<Node<T, D>>>& inputs_;
};

template <class T, class D>
using BackwardFn = std::function<void(const Tensor<T, D>& grad_out, GradSink<T, D>& inputs)>;

template <class T, class D>
struct Node {
  Tensor<T, D> value;
  Tensor<T, D> grad;  // undefined until a gradient arrives
  bool requires_grad = false;
  bool retains_grad = false;  // keep grad on a non-leaf after backward (tests, debugging)
  bool released = false;      // its graph was freed by a backward()
  const char* op = "leaf";
  std::vector<std::shared_ptr<Node>> inputs;
  BackwardFn<T, D> backward;

  bool is_leaf() const { return !backward && !released; }

  void accumulate(Tensor<T, D> g) {
    DETR_CHECK(g.shape() == value.shape(), "autograd: gradient of shape "
                                               << g.shape() << " for output of '" << op
                                               << "' of shape " << value.shape());
    if (!grad.defined()) {
      grad = std::move(g);
      return;
    }
    if (!grad.unique()) grad = grad.clone();  // never write into a buffer someone else holds
    T* acc = grad.data();
    const T* add = g.data();
    const int64_t n = grad.numel();
    if constexpr (is_cuda<D>) gpu::add_into(acc, add, n);
    else parallel_for_simd(n > (1 << 16), n, [=](int64_t i) { acc[i] += add[i]; });
  }
};

}  // namespace internal

template <class T, class D>
class Var {
 public:
  using Scalar = T;
  using Device = D;

  Var() = default;
  // A leaf holding `value` (shared, not copied).
  explicit Var(Tensor<T, D> value, bool requires_grad = false)
      : node_(std::make_shared<internal::Node<T, D>>()) {
    DETR_CHECK(value.defined(), "Var: cannot wrap an undefined tensor");
    node_->value = std::move(value);
    node_->requires_grad = requires_grad;
  }

  bool defined() const { return node_ != nullptr; }
  const Tensor<T, D>& value() const { return node_->value; }
  // In-place access for optimizers and initialisers; never use while a graph holds this value.
  Tensor<T, D>& mutable_value() { return node_->value; }
  const Shape& shape() const { return node_->value.shape(); }
  int rank() const { return node_->value.rank(); }
  int64_t dim(int i) const { return node_->value.dim(i); }
  int64_t numel() const { return node_->value.numel(); }
  T item() const { return node_->value.item(); }
  const char* op() const { return node_->op; }

  bool requires_grad() const { return node_->requires_grad; }
  bool is_leaf() const { return node_->is_leaf(); }
  Var& requires_grad_(bool on = true) {
    DETR_CHECK(is_leaf(), "requires_grad_: only leaves can change requires_grad (this is the "
                          "output of '" << op() << "')");
    node_->requires_grad = on;
    return *this;
  }
  Var& retain_grad() {
    node_->retains_grad = true;
    return *this;
  }

  // The accumulated gradient (undefined if none arrived).
  const Tensor<T, D>& grad() const { return node_->grad; }
  // The gradient in a buffer owned by this Var alone, for in-place edits (clipping).
  Tensor<T, D>& mutable_grad() {
    if (node_->grad.defined() && !node_->grad.unique()) node_->grad = node_->grad.clone();
    return node_->grad;
  }
  void zero_grad() { node_->grad = Tensor<T, D>(); }

  // A new leaf sharing this value, cut from the graph.
  Var detach() const { return Var(node_->value, false); }

  // Backpropagate from a scalar output.
  void backward(bool retain_graph = false) {
    DETR_CHECK(numel() == 1, "backward(): output of '" << op() << "' has shape " << shape()
                                                        << "; pass a gradient for non-scalars");
    backward(Tensor<T, D>::ones(shape()), retain_graph);
  }
  void backward(const Tensor<T, D>& seed, bool retain_graph = false) {
    DETR_CHECK(requires_grad(), "backward(): output of '" << op()
                                                          << "' does not require grad");
    DETR_CHECK(!node_->released, "backward(): the graph of '" << op()
                                     << "' was already freed by an earlier backward()");
    DETR_CHECK(seed.shape() == shape(), "backward(): seed shape " << seed.shape()
                                                                  << " vs output " << shape());
    auto order = topological_order();
    node_->accumulate(seed);
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      internal::Node<T, D>& n = **it;
      if (!n.backward) continue;
      if (n.grad.defined()) {
        internal::GradSink<T, D> sink(n.inputs);
        n.backward(n.grad, sink);
      }
      if (!retain_graph) {
        n.backward = nullptr;
        n.inputs.clear();
        n.released = true;
      }
      if (!n.retains_grad) n.grad = Tensor<T, D>();
    }
  }

  internal::Node<T, D>* node() const { return node_.get(); }

  // Used by record(): wraps a node built by an op.
  explicit Var(std::shared_ptr<internal::Node<T, D>> n) : node_(std::move(n)) {}
  const std::shared_ptr<internal::Node<T, D>>& node_ptr() const { return node_; }

 private:
  // Nodes reachable from this one, each after all of its inputs (iterative: graphs are deep).
  std::vector<std::shared_ptr<internal::Node<T, D>>> topological_order() const {
    using NodePtr = std::shared_ptr<internal::Node<T, D>>;
    std::vector<NodePtr> order;
    std::unordered_set<internal::Node<T, D>*> seen{node_.get()};
    std::vector<std::pair<NodePtr, size_t>> stack{{node_, 0}};
    while (!stack.empty()) {
      auto& [n, next] = stack.back();
      if (next < n->inputs.size()) {
        const NodePtr& child = n->inputs[next++];
        if (child->requires_grad && seen.insert(child.get()).second) stack.emplace_back(child, 0);
      } else {
        order.push_back(std::move(n));
        stack.pop_back();
      }
    }
    return order;
  }

  std::shared_ptr<internal::Node<T, D>> node_;
};

// record(): the one way ops enter the graph. `out` is the forward result; `backward` receives
// the output gradient and a GradSink over `inputs` (in the order given).
template <class T, class D, class Backward>
Var<T, D> record(const char* op, Tensor<T, D> out, std::vector<Var<T, D>> inputs, Backward&& backward) {
  auto node = std::make_shared<internal::Node<T, D>>();
  node->value = std::move(out);
  node->op = op;
  bool needs = false;
  if (grad_enabled())
    for (const auto& v : inputs) needs = needs || v.requires_grad();
  if (needs) {
    node->requires_grad = true;
    node->inputs.reserve(inputs.size());
    for (const auto& v : inputs) node->inputs.push_back(v.node_ptr());
    node->backward = std::forward<Backward>(backward);
  }
  return Var<T, D>(std::move(node));
}

// A constant (no grad) Var holding `t`.
template <class T, class D>
Var<T, D> constant(Tensor<T, D> t) {
  return Var<T, D>(std::move(t), false);
}

}  // namespace detr
