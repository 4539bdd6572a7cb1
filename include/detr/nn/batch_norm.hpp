#pragma once
// BatchNorm2d<C>: torch.nn.BatchNorm2d (momentum 0.1, eps 1e-5, affine, tracking running stats),
// and FrozenBatchNorm2d<C>: torchvision.ops.FrozenBatchNorm2d, the backbone norm of every DETR
// variant, where weight, bias and the statistics are all fixed buffers.
#include "detr/nn/module.hpp"
#include "detr/ops/batch_norm.hpp"

namespace detr {

/// \tparam C channels   \tparam T scalar type
/// \tparam Frozen  weight and bias are buffers (no gradient) and the running stats are always
///                 used; the state_dict then has torchvision's four names, no num_batches_tracked
template <int C, class T = float, bool Frozen = false>
struct BatchNorm2d {
  static_assert(C > 0, "BatchNorm2d<C>: the channel count must be positive");
  using Scalar = T;
  static constexpr int num_features = C;

  Var<T> weight{Tensor<T>::ones({C}), !Frozen};   // [C]
  Var<T> bias{Tensor<T>::zeros({C}), !Frozen};    // [C]
  Tensor<T> running_mean = Tensor<T>::zeros({C});  // [C]
  Tensor<T> running_var = Tensor<T>::ones({C});    // [C]
  Tensor<T> num_batches_tracked = Tensor<T>::scalar(T(0));  // [] (int64 in torch)
  bool training = !Frozen;
  T momentum = T(0.1), eps = T(1e-5);

  // torch.nn.BatchNorm2d.reset_parameters: weight 1, bias 0, statistics reset.
  void init(Rng&) {
    weight.mutable_value().fill_(T(1));
    bias.mutable_value().fill_(T(0));
    running_mean.fill_(T(0));
    running_var.fill_(T(1));
    num_batches_tracked.fill_(T(0));
  }

  template <class V>
  void visit(V& v) {
    if constexpr (Frozen) {
      v.buffer("weight", weight.mutable_value());
      v.buffer("bias", bias.mutable_value());
    } else {
      v.param("weight", weight);
      v.param("bias", bias);
    }
    v.buffer("running_mean", running_mean);
    v.buffer("running_var", running_var);
    if constexpr (!Frozen) {
      v.buffer("num_batches_tracked", num_batches_tracked);
      v.mode(training);
    }
  }

  // x [B, C, H, W] -> [B, C, H, W]; in training mode the running stats are updated in place.
  Var<T> forward(const Var<T>& x) {
    DETR_CHECK(x.rank() == 4, "BatchNorm2d: expected input [B, C, H, W], got " << x.shape());
    const bool batch_stats = !Frozen && training;
    if (batch_stats) num_batches_tracked.data()[0] += T(1);
    return batch_norm(x, running_mean, running_var, weight, bias, batch_stats, momentum, eps);
  }
};

template <int C, class T = float>
using FrozenBatchNorm2d = BatchNorm2d<C, T, true>;

}  // namespace detr
