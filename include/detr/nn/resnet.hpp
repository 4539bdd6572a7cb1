#pragma once
// ResNet<Depth, WidthDiv, T, Norm>: torchvision's ResNet-18 / 34 / 50 (v1.5: the stride of a
// bottleneck sits on its 3x3 conv) as the DETR-family backbone, without avgpool and fc. Returns
// the outputs of layer2, layer3 and layer4 (C3, C4, C5; strides 8, 16, 32), the levels
// Deformable DETR reads (DETR reads C5 only). Parameter names are torchvision's state_dict keys,
// so a converted torchvision / DETR checkpoint loads one to one.
//
// The norm is BatchNorm2d (torchvision) or FrozenBatchNorm2d (what DETR and Deformable DETR
// build their backbone with). WidthDiv divides every channel count (64 / WidthDiv, ...) for
// models small enough to train on a CPU; the output channels are constexpr members, so a model
// sizes its input projections at compile time.
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "detr/data/batch.hpp"
#include "detr/nn/batch_norm.hpp"
#include "detr/nn/conv2d.hpp"
#include "detr/nn/module.hpp"
#include "detr/ops/elementwise.hpp"
#include "detr/ops/pool.hpp"

namespace detr {

enum class BackboneNorm {
  Trainable,  // torch.nn.BatchNorm2d: batch statistics in training mode, affine trained
  Frozen      // FrozenBatchNorm2d: running statistics always, no parameters (DETR's choice)
};

namespace internal {

template <int C, class T, BackboneNorm Norm>
using ResNetNorm = BatchNorm2d<C, T, Norm == BackboneNorm::Frozen>;

// torchvision ResNet.__init__: kaiming_normal_(mode='fan_out', nonlinearity='relu') on every
// conv, i.e. N(0, sqrt(2 / (Cout K K))); norms get weight 1, bias 0 (their own init).
template <class Conv>
void kaiming_fan_out(Conv& conv, Rng& rng) {
  constexpr int fan_out = Conv::out_channels * Conv::kernel_size * Conv::kernel_size;
  conv.weight.mutable_value().copy_(rng.normal_tensor<typename Conv::Scalar>(
      conv.weight.shape(), 0.0, std::sqrt(2.0 / fan_out)));
}

// torchvision's `downsample = nn.Sequential(conv1x1(inplanes, planes * expansion, stride),
// norm_layer(planes * expansion))`, named "0" and "1".
template <int Cin, int Cout, int Stride, class T, BackboneNorm Norm>
struct Downsample {
  using Scalar = T;
  Conv2d<Cin, Cout, 1, Stride, 0, 1, T, false> conv;
  ResNetNorm<Cout, T, Norm> bn;

  void init(Rng& rng) {
    kaiming_fan_out(conv, rng);
    bn.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("0", conv);
    v.child("1", bn);
  }
  // x [B, Cin, H, W] -> [B, Cout, OH, OW]
  Var<T> forward(const Var<T>& x) { return bn.forward(conv.forward(x)); }
};

// The identity shortcut of a block whose input and output shapes agree.
template <class T>
struct NoDownsample {
  using Scalar = T;
  void init(Rng&) {}
  template <class V>
  void visit(V&) {}
  Var<T> forward(const Var<T>& x) { return x; }
};

}  // namespace internal

/// torchvision BasicBlock (ResNet-18 / 34): two 3x3 convs, the first with the stride.
/// \tparam Cin input channels   \tparam Planes output channels (expansion 1)
template <int Cin, int Planes, int Stride, class T = float, BackboneNorm Norm = BackboneNorm::Trainable>
struct BasicBlock {
  using Scalar = T;
  static constexpr int expansion = 1, in_channels = Cin, out_channels = Planes;
  static constexpr bool has_downsample = Stride != 1 || Cin != Planes;

  Conv2d<Cin, Planes, 3, Stride, 1, 1, T, false> conv1;
  internal::ResNetNorm<Planes, T, Norm> bn1;
  Conv2d<Planes, Planes, 3, 1, 1, 1, T, false> conv2;
  internal::ResNetNorm<Planes, T, Norm> bn2;
  std::conditional_t<has_downsample, internal::Downsample<Cin, Planes, Stride, T, Norm>,
                     internal::NoDownsample<T>>
      downsample;

  void init(Rng& rng) {
    internal::kaiming_fan_out(conv1, rng);
    bn1.init(rng);
    internal::kaiming_fan_out(conv2, rng);
    bn2.init(rng);
    downsample.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("conv1", conv1);
    v.child("bn1", bn1);
    v.child("conv2", conv2);
    v.child("bn2", bn2);
    if constexpr (has_downsample) v.child("downsample", downsample);
  }
  // x [B, Cin, H, W] -> [B, Planes, H / Stride, W / Stride] (rounded as the 3x3 conv rounds)
  Var<T> forward(const Var<T>& x) {
    auto out = relu(bn1.forward(conv1.forward(x)));
    out = bn2.forward(conv2.forward(out));
    return relu(out + downsample.forward(x));
  }
};

/// torchvision Bottleneck (ResNet-50), v1.5: 1x1 reduce, 3x3 with the stride, 1x1 expand by 4.
/// \tparam Cin input channels   \tparam Planes inner width (output channels 4 Planes)
template <int Cin, int Planes, int Stride, class T = float, BackboneNorm Norm = BackboneNorm::Trainable>
struct Bottleneck {
  using Scalar = T;
  static constexpr int expansion = 4, in_channels = Cin, out_channels = 4 * Planes;
  static constexpr bool has_downsample = Stride != 1 || Cin != 4 * Planes;

  Conv2d<Cin, Planes, 1, 1, 0, 1, T, false> conv1;
  internal::ResNetNorm<Planes, T, Norm> bn1;
  Conv2d<Planes, Planes, 3, Stride, 1, 1, T, false> conv2;
  internal::ResNetNorm<Planes, T, Norm> bn2;
  Conv2d<Planes, 4 * Planes, 1, 1, 0, 1, T, false> conv3;
  internal::ResNetNorm<4 * Planes, T, Norm> bn3;
  std::conditional_t<has_downsample, internal::Downsample<Cin, 4 * Planes, Stride, T, Norm>,
                     internal::NoDownsample<T>>
      downsample;

  void init(Rng& rng) {
    internal::kaiming_fan_out(conv1, rng);
    bn1.init(rng);
    internal::kaiming_fan_out(conv2, rng);
    bn2.init(rng);
    internal::kaiming_fan_out(conv3, rng);
    bn3.init(rng);
    downsample.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("conv1", conv1);
    v.child("bn1", bn1);
    v.child("conv2", conv2);
    v.child("bn2", bn2);
    v.child("conv3", conv3);
    v.child("bn3", bn3);
    if constexpr (has_downsample) v.child("downsample", downsample);
  }
  // x [B, Cin, H, W] -> [B, 4 Planes, H / Stride, W / Stride]
  Var<T> forward(const Var<T>& x) {
    auto out = relu(bn1.forward(conv1.forward(x)));
    out = relu(bn2.forward(conv2.forward(out)));
    out = bn3.forward(conv3.forward(out));
    return relu(out + downsample.forward(x));
  }
};

/// torchvision ResNet._make_layer: N blocks named "0" .. "N-1"; the first takes the stride and
/// the channel change (and so owns the downsample), the others keep the shape.
/// \tparam Block a block template (BasicBlock or Bottleneck)
template <template <int, int, int, class, BackboneNorm> class Block, int N, int Cin, int Planes,
          int Stride, class T, BackboneNorm Norm>
struct ResLayer {
  static_assert(N >= 1, "ResLayer: a layer has at least one block");
  using Scalar = T;
  using First = Block<Cin, Planes, Stride, T, Norm>;
  using Rest = Block<First::out_channels, Planes, 1, T, Norm>;
  static constexpr int out_channels = First::out_channels;

  First first;
  std::array<Rest, N - 1> rest;

  void init(Rng& rng) {
    first.init(rng);
    for (auto& b : rest) b.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("0", first);
    for (int i = 0; i < N - 1; ++i) v.child(std::to_string(i + 1), rest[size_t(i)]);
  }
  // x [B, Cin, H, W] -> [B, out_channels, H / Stride, W / Stride]
  Var<T> forward(const Var<T>& x) {
    auto y = first.forward(x);
    for (auto& b : rest) y = b.forward(y);
    return y;
  }
};

namespace internal {
// torchvision's resnet18 / resnet34 / resnet50: block type and blocks per layer.
template <int Depth>
struct ResNetArch;
template <>
struct ResNetArch<18> {
  template <int Cin, int P, int S, class T, BackboneNorm N>
  using Block = BasicBlock<Cin, P, S, T, N>;
  static constexpr std::array<int, 4> layers{2, 2, 2, 2};
  static constexpr int expansion = 1;
};
template <>
struct ResNetArch<34> {
  template <int Cin, int P, int S, class T, BackboneNorm N>
  using Block = BasicBlock<Cin, P, S, T, N>;
  static constexpr std::array<int, 4> layers{3, 4, 6, 3};
  static constexpr int expansion = 1;
};
template <>
struct ResNetArch<50> {
  template <int Cin, int P, int S, class T, BackboneNorm N>
  using Block = Bottleneck<Cin, P, S, T, N>;
  static constexpr std::array<int, 4> layers{3, 4, 6, 3};
  static constexpr int expansion = 4;
};
}  // namespace internal

// The multi-scale output of the backbone (torchvision's IntermediateLayerGetter with
// return_layers layer2 / layer3 / layer4).
template <class T>
struct ResNetFeatures {
  Var<T> c3;  // [B, C3, H / 8, W / 8]   layer2
  Var<T> c4;  // [B, C4, H / 16, W / 16] layer3
  Var<T> c5;  // [B, C5, H / 32, W / 32] layer4
  std::array<Var<T>, 3> levels() const { return {c3, c4, c5}; }
};

/// \tparam Depth 18, 34 or 50
/// \tparam WidthDiv divides every channel count (1 = torchvision; must divide 64)
/// \tparam T scalar type
/// \tparam Norm BatchNorm2d (Trainable, torchvision's default) or FrozenBatchNorm2d (DETR)
template <int Depth, int WidthDiv = 1, class T = float, BackboneNorm Norm = BackboneNorm::Trainable>
struct ResNet {
  static_assert(Depth == 18 || Depth == 34 || Depth == 50, "ResNet<Depth>: Depth must be 18, 34 or 50");
  static_assert(WidthDiv >= 1 && 64 % WidthDiv == 0, "ResNet: WidthDiv must divide 64");
  using Scalar = T;
  using Arch = internal::ResNetArch<Depth>;
  static constexpr int depth = Depth, base_width = 64 / WidthDiv;
  static constexpr int c2_channels = base_width * Arch::expansion;  // layer1
  static constexpr int c3_channels = 2 * base_width * Arch::expansion;
  static constexpr int c4_channels = 4 * base_width * Arch::expansion;
  static constexpr int c5_channels = 8 * base_width * Arch::expansion;
  static constexpr std::array<int, 3> channels{c3_channels, c4_channels, c5_channels};
  static constexpr std::array<int, 3> strides{8, 16, 32};

  Conv2d<3, base_width, 7, 2, 3, 1, T, false> conv1;
  internal::ResNetNorm<base_width, T, Norm> bn1;
  ResLayer<Arch::template Block, Arch::layers[0], base_width, base_width, 1, T, Norm> layer1;
  ResLayer<Arch::template Block, Arch::layers[1], c2_channels, 2 * base_width, 2, T, Norm> layer2;
  ResLayer<Arch::template Block, Arch::layers[2], c3_channels, 4 * base_width, 2, T, Norm> layer3;
  ResLayer<Arch::template Block, Arch::layers[3], c4_channels, 8 * base_width, 2, T, Norm> layer4;

  void init(Rng& rng) {
    internal::kaiming_fan_out(conv1, rng);
    bn1.init(rng);
    layer1.init(rng);
    layer2.init(rng);
    layer3.init(rng);
    layer4.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("conv1", conv1);
    v.child("bn1", bn1);
    v.child("layer1", layer1);
    v.child("layer2", layer2);
    v.child("layer3", layer3);
    v.child("layer4", layer4);
  }

  // images [B, 3, H, W] -> C3, C4, C5. The stem is the 7x7 stride-2 conv, bn1, relu and the
  // 3x3 stride-2 max pool (padding 1), as torchvision.
  ResNetFeatures<T> forward(const Var<T>& images) {
    DETR_CHECK(images.rank() == 4 && images.dim(1) == 3,
               "ResNet: expected images [B, 3, H, W], got " << images.shape());
    auto x = max_pool2d(relu(bn1.forward(conv1.forward(images))), 3, 2, 1);
    x = layer1.forward(x);
    ResNetFeatures<T> f;
    f.c3 = layer2.forward(x);
    f.c4 = layer3.forward(f.c3);
    f.c5 = layer4.forward(f.c4);
    return f;
  }
};

// The padding mask of each feature level, as DETR's Backbone.forward:
// F.interpolate(mask[None].float(), size=x.shape[-2:]).to(torch.bool)[0].
// mask [B, H, W] (1 = padding) -> {[B, h3, w3], [B, h4, w4], [B, h5, w5]}
template <class T>
std::array<Tensor<uint8_t>, 3> feature_masks(const Tensor<uint8_t>& mask, const ResNetFeatures<T>& f) {
  std::array<Tensor<uint8_t>, 3> out;
  const auto levels = f.levels();
  for (size_t l = 0; l < 3; ++l) {
    DETR_CHECK(levels[l].rank() == 4 && mask.defined() && mask.rank() == 3 &&
                   levels[l].dim(0) == mask.dim(0),
               "feature_masks: mask " << (mask.defined() ? mask.shape().str() : std::string("undefined"))
                                      << " does not match feature level " << l << " "
                                      << levels[l].shape() << " (expected [B, H, W] and [B, C, h, w])");
    out[l] = downsample_mask(mask, levels[l].dim(2), levels[l].dim(3));
  }
  return out;
}

// DETR's train_backbone rule (models/backbone.py BackboneBase): the backbone trains only when
// lr_backbone > 0, and then only layer2, layer3 and layer4; conv1, bn1 and layer1 stay frozen.
// Sets requires_grad on every parameter of the backbone accordingly.
template <Module M>
void apply_train_backbone(M& backbone, double lr_backbone) {
  const bool train_backbone = lr_backbone > 0;
  for (auto& p : named_parameters(backbone)) {
    const bool late = p.name.rfind("layer2.", 0) == 0 || p.name.rfind("layer3.", 0) == 0 ||
                      p.name.rfind("layer4.", 0) == 0;
    p.var->requires_grad_(train_backbone && late);
  }
}

}  // namespace detr
