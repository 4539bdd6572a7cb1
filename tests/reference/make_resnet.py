"""Reference outputs and gradients for width-reduced ResNet-18 and ResNet-50 backbones.

torchvision is not installed here, so the script builds torchvision's ResNet v1.5 by hand
(torchvision/models/resnet.py: BasicBlock, Bottleneck with the stride on the 3x3 conv, downsample
= 1x1 conv + norm, no fc) with DETR's FrozenBatchNorm2d (models/backbone.py), channel widths
divided by `width_div`. Writes tests/data/resnet.safetensors: for each case `<case>.<name>` holds
the state_dict (torchvision names), the input `x`, the outputs `c3`, `c4`, `c5` (layer2..layer4),
the fixed upstream gradients `grad_c3/4/5`, and the gradients of the input and a few weights.
Also `<case>.param_count` / the state_dict shapes, to pin the names. float32, CPU, fixed seeds.
"""
import torch
from torch import nn

from common import save

torch.manual_seed(0)


class FrozenBatchNorm2d(nn.Module):
    """facebookresearch/detr models/backbone.py FrozenBatchNorm2d."""

    def __init__(self, n):
        super().__init__()
        self.register_buffer("weight", torch.ones(n))
        self.register_buffer("bias", torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def forward(self, x):
        w = self.weight.reshape(1, -1, 1, 1)
        b = self.bias.reshape(1, -1, 1, 1)
        rv = self.running_var.reshape(1, -1, 1, 1)
        rm = self.running_mean.reshape(1, -1, 1, 1)
        scale = w * (rv + 1e-5).rsqrt()
        return x * scale + (b - rm * scale)


def conv3x3(i, o, stride=1):
    return nn.Conv2d(i, o, 3, stride, 1, bias=False)


def conv1x1(i, o, stride=1):
    return nn.Conv2d(i, o, 1, stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride, downsample, norm):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, downsample, norm):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = norm(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = norm(planes)
        self.conv3 = conv1x1(planes, planes * 4)
        self.bn3 = norm(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers, width_div, norm):
        super().__init__()
        base = 64 // width_div
        self.inplanes = base
        self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = norm(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, base, layers[0], 1, norm)
        self.layer2 = self._make_layer(block, 2 * base, layers[1], 2, norm)
        self.layer3 = self._make_layer(block, 4 * base, layers[2], 2, norm)
        self.layer4 = self._make_layer(block, 8 * base, layers[3], 2, norm)

    def _make_layer(self, block, planes, blocks, stride, norm):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       norm(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, norm)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, None, norm) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c3, c4, c5


if __name__ == "__main__":  # importable: later scripts reuse the classes above
    out = {}
    x = torch.randn(2, 3, 50, 66)  # odd sizes: every stride-2 stage rounds


    def case(name, block, layers, width_div, grads):
        net = ResNet(block, layers, width_div, FrozenBatchNorm2d)
        with torch.no_grad():
            for n, m in net.named_modules():
                if isinstance(m, nn.Conv2d):
                    # He (fan_in) scale, and small last norms of each residual branch below, so the
                    # activations stay O(1) through the residual sums as in a trained network.
                    m.weight.normal_(0.0, (2.0 / (m.in_channels * m.kernel_size[0] ** 2)) ** 0.5)
                if isinstance(m, FrozenBatchNorm2d):
                    last = n.endswith("bn3") or (block is BasicBlock and n.endswith("bn2"))
                    m.weight.uniform_(0.1, 0.4) if last else m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.2)
                    m.running_mean.normal_(0.0, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
        xi = x.clone().requires_grad_(True)
        c3, c4, c5 = net(xi)
        gs = [torch.randn_like(c) for c in (c3, c4, c5)]
        ((c3 * gs[0]).sum() + (c4 * gs[1]).sum() + (c5 * gs[2]).sum()).backward()
        for k, v in net.state_dict().items():
            out[f"{name}.{k}"] = v.clone()
        for k, v in zip(("c3", "c4", "c5"), (c3, c4, c5)):
            out[f"{name}.{k}"] = v
            print(name, k, tuple(v.shape), "max |value|", v.abs().max().item())
        for k, g in zip(("c3", "c4", "c5"), gs):
            out[f"{name}.grad_{k}"] = g
        out[f"{name}.grad.x"] = xi.grad
        params = dict(net.named_parameters())
        for g in grads:
            out[f"{name}.grad.{g}"] = params[g].grad


    out["x"] = x
    case("r18", BasicBlock, [2, 2, 2, 2], 32,
         ["conv1.weight", "layer1.0.conv1.weight", "layer4.1.conv2.weight"])
    case("r50", Bottleneck, [3, 4, 6, 3], 32,
         ["conv1.weight", "layer2.0.downsample.0.weight", "layer4.2.conv3.weight"])


    def shapes(block, layers):
        """Names and shapes of the full-width torchvision state_dict (trainable BatchNorm2d)."""
        net = ResNet(block, layers, 1, nn.BatchNorm2d)
        return {k: list(v.shape) for k, v in net.state_dict().items()}


    meta = {}
    for n, b, l in (("resnet18", BasicBlock, [2, 2, 2, 2]), ("resnet34", BasicBlock, [3, 4, 6, 3]),
                    ("resnet50", Bottleneck, [3, 4, 6, 3])):
        s = shapes(b, l)
        meta[n] = ";".join(f"{k}:{'x'.join(map(str, v))}" for k, v in s.items())
    save("resnet", out, metadata=meta)
