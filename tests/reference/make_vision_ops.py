"""Writes tests/data/vision_ops.safetensors: conv2d, max_pool2d, batch_norm, group_norm and
nearest interpolation from PyTorch (float32, CPU): inputs, parameters, outputs, updated running
statistics, and the gradients for a fixed upstream gradient `<case>.gout`."""
import torch
import torch.nn.functional as F
from common import save

torch.manual_seed(0)
out = {}


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_()


def backprop(name, y, inputs):
    """Stores y and, for a fixed random upstream gradient, the gradient of every input."""
    gout = torch.randn_like(y)
    y.backward(gout)
    out[f"{name}.out"] = y
    out[f"{name}.gout"] = gout
    for k, t in inputs.items():
        out[f"{name}.{k}"] = t
        if t.grad is not None:
            out[f"{name}.g{k}"] = t.grad


# conv2d: (name, x shape, weight shape, bias, stride, padding, dilation, groups)
conv_cases = [
    ("conv_s2p1", (2, 3, 7, 6), (4, 3, 3, 3), True, 2, 1, 1, 1),
    ("conv_dil2", (1, 2, 8, 7), (3, 2, 3, 3), False, 1, 2, 2, 1),
    ("conv_1x1", (2, 5, 4, 3), (6, 5, 1, 1), True, 1, 0, 1, 1),
    ("conv_1x1s2", (2, 4, 5, 5), (3, 4, 1, 1), False, 2, 0, 1, 1),
    ("conv_groups", (2, 4, 6, 5), (4, 2, 3, 2), True, (2, 1), (1, 0), 1, 2),
    ("conv_stem", (1, 3, 12, 10), (4, 3, 7, 7), False, 2, 3, 1, 1),
]
for name, xs, ws, has_bias, s, p, d, g in conv_cases:
    x, w = leaf(*xs), leaf(*ws, scale=0.3)
    b = leaf(ws[0]) if has_bias else None
    y = F.conv2d(x, w, b, stride=s, padding=p, dilation=d, groups=g)
    inputs = {"x": x, "w": w}
    if has_bias:
        inputs["b"] = b
    backprop(name, y, inputs)

# max_pool2d 3x3 stride 2 padding 1 (ResNet's stem), on random values and on small integers
# where ties decide which input gets the gradient (the first maximum, in row-major order).
x = leaf(2, 3, 9, 8)
backprop("pool", F.max_pool2d(x, 3, 2, 1), {"x": x})
x = torch.randint(0, 3, (2, 2, 7, 6)).float().requires_grad_()
backprop("pool_ties", F.max_pool2d(x, 3, 2, 1), {"x": x})
x = leaf(1, 2, 6, 7)
backprop("pool_k2", F.max_pool2d(x, 2, (2, 3), 0), {"x": x})

# batch_norm in training mode: batch statistics, full backward, running stats updated in place
# with momentum 0.1 and the unbiased variance.
for name, xs in [("bn_train", (3, 4, 5, 4)), ("bn_train2d", (6, 3))]:
    C = xs[1]
    x, w, b = leaf(*xs, scale=2.0), leaf(C), leaf(C)
    with torch.no_grad():
        x += 0.5
    rm, rv = torch.randn(C), torch.rand(C) + 0.5
    out[f"{name}.running_mean_before"], out[f"{name}.running_var_before"] = rm.clone(), rv.clone()
    y = F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
    out[f"{name}.running_mean"], out[f"{name}.running_var"] = rm, rv
    backprop(name, y, {"x": x, "w": w, "b": b})

# eval mode with trainable affine parameters, and torchvision's FrozenBatchNorm2d formula
# (weight, bias and statistics all fixed buffers).
x, w, b = leaf(2, 4, 3, 5), leaf(4), leaf(4)
rm, rv = torch.randn(4), torch.rand(4) + 0.5
out["bn_eval.running_mean"], out["bn_eval.running_var"] = rm, rv
backprop("bn_eval", F.batch_norm(x, rm, rv, w, b, training=False, eps=1e-5), {"x": x, "w": w, "b": b})
x = leaf(2, 4, 3, 5)
wf, bf = torch.randn(4), torch.randn(4)
scale = wf * (rv + 1e-5).rsqrt()
y = x * scale.reshape(1, -1, 1, 1) + (bf - rm * scale).reshape(1, -1, 1, 1)
out["bn_frozen.w"], out["bn_frozen.b"] = wf, bf
out["bn_frozen.running_mean"], out["bn_frozen.running_var"] = rm, rv
backprop("bn_frozen", y, {"x": x})

# group_norm: GroupNorm(32, 64) as in Deformable DETR's input projection, and a [B, C, L] case.
for name, xs, groups in [("gn32", (2, 64, 3, 4), 32), ("gn_small", (3, 6, 5), 3)]:
    C = xs[1]
    x, w, b = leaf(*xs, scale=1.5), leaf(C), leaf(C)
    backprop(name, F.group_norm(x, groups, w, b, eps=1e-5), {"x": x, "w": w, "b": b})

# nearest interpolation (src = floor(dst * in / out)): down, up, exact 2x, mixed.
for name, size in [("interp_down", (3, 4)), ("interp_up", (8, 11)), ("interp_2x", (10, 14)),
                   ("interp_mixed", (7, 3))]:
    x = leaf(2, 3, 5, 7)
    backprop(name, F.interpolate(x, size=size, mode="nearest"), {"x": x})
# DETR's mask downsampling: F.interpolate(m[None].float(), size=...).to(torch.bool)[0]
m = torch.rand(2, 13, 17) > 0.5
out["interp_mask.m"] = m.float()
out["interp_mask.out"] = F.interpolate(m[None].float(), size=(4, 5))[0]

save("vision_ops", out)
