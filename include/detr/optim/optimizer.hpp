#pragma once
// Optimizer<T>: what AdamW and SGD share (torch.optim.Optimizer): parameter groups, each with its
// own learning rate and weight decay (DETR trains its backbone at a tenth of the lr), and
// per-parameter state kept by parameter name so checkpoints survive a reordering of groups.
//
//   AdamW<float> opt({{backbone_params, 1e-5}, {other_params}}, {.lr = 1e-4, .weight_decay = 1e-4});
//
// Parameters are the Var<T>* that named_parameters(model) returns; a parameter whose grad is
// undefined when step() runs is skipped, state untouched (torch skips `p.grad is None`).
#include <array>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "detr/nn/module.hpp"

namespace detr {

// What a user passes: parameters and optional overrides of the optimizer's defaults.
template <class T>
struct ParamGroupSpec {
  std::vector<NamedParameter<T>> params;
  std::optional<double> lr = std::nullopt;
  std::optional<double> weight_decay = std::nullopt;
};

// A group as the optimizer runs it. Schedules write `lr` from `initial_lr` (torch's
// group['initial_lr']).
template <class T>
struct ParamGroup {
  std::vector<NamedParameter<T>> params;
  double lr;
  double initial_lr;
  double weight_decay;
};

// Per-parameter state: a step count and up to two buffers shaped like the parameter, named by
// the optimizer (AdamW: exp_avg, exp_avg_sq; SGD: momentum_buffer). Undefined until first used.
template <class T>
struct ParamState {
  int64_t step = 0;
  std::array<Tensor<T>, 2> buffers;
};

template <class T>
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient.
  virtual void step() = 0;
  // "AdamW", "SGD": written to checkpoints, checked when loading.
  virtual const char* type_name() const = 0;
  // Names of ParamState::buffers in use, in slot order (checkpoint keys).
  virtual std::vector<const char*> state_names() const = 0;

  // set_to_none (torch 2's default) drops every gradient, so a parameter that gets none in the
  // next backward is skipped by step(). Without it (torch 1.13's default, which the official
  // DETR training ran with) gradients are zero-filled: such a parameter is still decayed and
  // moved by its momentum.
  void zero_grad(bool set_to_none = true) {
    for (auto& g : groups_)
      for (auto& p : g.params) {
        if (set_to_none) {
          p.var->zero_grad();
        } else {
          Tensor<T>& grad = p.var->mutable_grad();
          if (grad.defined()) grad.fill_(T(0));
        }
      }
  }

  std::vector<ParamGroup<T>>& param_groups() { return groups_; }
  const std::vector<ParamGroup<T>>& param_groups() const { return groups_; }

  // State of parameter `index` in group order (group 0's parameters first).
  ParamState<T>& state(size_t index) { return state_.at(index); }
  const ParamState<T>& state(size_t index) const { return state_.at(index); }
  size_t num_params() const { return state_.size(); }

 protected:
  Optimizer(std::vector<ParamGroupSpec<T>> specs, double default_lr, double default_weight_decay,
            const char* who) {
    DETR_CHECK(!specs.empty(), who << ": no parameter groups given");
    std::set<std::string> names;
    std::set<const Var<T>*> vars;
    for (size_t gi = 0; gi < specs.size(); ++gi) {
      auto& s = specs[gi];
      double lr = s.lr.value_or(default_lr), wd = s.weight_decay.value_or(default_weight_decay);
      DETR_CHECK(lr >= 0, who << ": group " << gi << " has invalid learning rate " << lr);
      DETR_CHECK(wd >= 0, who << ": group " << gi << " has invalid weight_decay " << wd);
      for (auto& p : s.params) {
        DETR_CHECK(p.var && p.var->defined(), who << ": parameter '" << p.name << "' in group " << gi
                                                  << " is undefined");
        DETR_CHECK(p.var->is_leaf(), who << ": parameter '" << p.name
                                         << "' is not a leaf (output of '" << p.var->op() << "')");
        DETR_CHECK(names.insert(p.name).second,
                   who << ": parameter name '" << p.name << "' appears more than once");
        DETR_CHECK(vars.insert(p.var).second, who << ": parameter '" << p.name
                                                  << "' is already in a parameter group");
      }
      state_.resize(state_.size() + s.params.size());
      groups_.push_back({std::move(s.params), lr, lr, wd});
    }
    DETR_CHECK(!state_.empty(), who << ": got an empty parameter list");
  }

  // Calls f(group, param, state) for every parameter that has a gradient.
  template <class F>
  void for_each_with_grad(const char* who, F&& f) {
    size_t count = 0;
    for (auto& g : groups_) count += g.params.size();
    DETR_CHECK(count == state_.size(), who << ": the parameter groups hold " << count
                                           << " parameters, the optimizer was built with "
                                           << state_.size() << " (groups must not change after construction)");
    size_t index = 0;
    for (auto& g : groups_)
      for (auto& p : g.params) {
        ParamState<T>& st = state_[index++];
        if (!p.var->grad().defined()) continue;
        DETR_CHECK(p.var->grad().shape() == p.var->shape(),
                   who << ": gradient of '" << p.name << "' has shape " << p.var->grad().shape()
                       << ", the parameter " << p.var->shape());
        f(g, p, st);
      }
  }

  std::vector<ParamGroup<T>> groups_;
  std::vector<ParamState<T>> state_;
};

namespace internal {
// Element loops over a parameter run on all threads once they are this long; each element is
// independent, so the result does not depend on the thread count.
inline constexpr int64_t kOptimParallelMin = int64_t(1) << 15;
}  // namespace internal

}  // namespace detr
