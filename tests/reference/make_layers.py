"""Reference outputs and gradients for Linear, LayerNorm, MLP, FFN and MultiheadAttention.

Writes tests/data/layers.safetensors: for each case `<case>.<name>` holds the inputs, the module's
parameters under their state_dict names, the upstream gradient `grad_out`, the output `out`, and
`grad.<input or parameter name>`. float32, CPU, fixed seeds.
"""
import torch
import torch.nn.functional as F
from torch import nn

from common import save

torch.manual_seed(0)
out = {}


def record(case, module, inputs, forward):
    """Run forward with the given named inputs, backprop a fixed random gradient, store all."""
    for k, v in inputs.items():
        if v.dtype.is_floating_point:
            v.requires_grad_(True)
        out[f"{case}.{k}"] = v
    y = forward(**inputs)
    g = torch.randn_like(y)
    y.backward(g)
    out[f"{case}.out"] = y
    out[f"{case}.grad_out"] = g
    for k, v in inputs.items():
        if v.grad is not None:
            out[f"{case}.grad.{k}"] = v.grad.clone()
    for k, p in module.state_dict(keep_vars=True).items():
        out[f"{case}.{k}"] = p.detach().clone()
        if p.grad is not None:
            out[f"{case}.grad.{k}"] = p.grad.clone()


class MLP(nn.Module):
    """facebookresearch/detr models/detr.py MLP (the box head)."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + h, h + [output_dim]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x


class FFN(nn.Module):
    """The FFN half of detr's TransformerEncoderLayer.forward_post (dropout off)."""

    def __init__(self, d, f):
        super().__init__()
        self.linear1 = nn.Linear(d, f)
        self.linear2 = nn.Linear(f, d)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, x):
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


lin = nn.Linear(16, 8)
record("linear", lin, {"x": torch.randn(2, 5, 16)}, lambda x: lin(x))

ln = nn.LayerNorm(16)
with torch.no_grad():
    ln.weight.normal_()
    ln.bias.normal_()
record("layer_norm", ln, {"x": torch.randn(2, 5, 16) * 3 + 1}, lambda x: ln(x))

mlp = MLP(16, 32, 4, 3)
record("mlp", mlp, {"x": torch.randn(2, 5, 16)}, lambda x: mlp(x))

ffn = FFN(16, 64)
with torch.no_grad():
    ffn.norm2.weight.normal_()
record("ffn", ffn, {"x": torch.randn(2, 5, 16)}, lambda x: ffn(x))

# MultiheadAttention(batch_first=True): query, key, value of different lengths, 4 heads.
B, Lq, Lk, D, H = 2, 5, 7, 16, 4
mha = nn.MultiheadAttention(D, H, batch_first=True)
with torch.no_grad():
    mha.in_proj_bias.normal_(0, 0.1)
    mha.out_proj.bias.normal_(0, 0.1)
bool_mask = torch.rand(Lq, Lk) < 0.3
bool_mask[:, 0] = False  # keep every row attendable
kpm = torch.zeros(B, Lk, dtype=torch.bool)
kpm[0, 5:] = True
kpm[1, 2] = True


def mha_case(case, **masks):
    q, k, v = torch.randn(B, Lq, D), torch.randn(B, Lk, D), torch.randn(B, Lk, D)
    inputs = {"query": q, "key": k, "value": v, **masks}
    mha.zero_grad()

    def fwd(query, key, value, attn_mask=None, key_padding_mask=None):
        return mha(query, key, value, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                   need_weights=False)[0]

    record(case, mha, inputs, fwd)


mha_case("mha_plain")
mha_case("mha_bool_mask", attn_mask=bool_mask)
mha_case("mha_float_mask", attn_mask=torch.randn(Lq, Lk))
mha_case("mha_kpm", key_padding_mask=kpm)
mha_case("mha_3d_mask_kpm", attn_mask=torch.randn(B * H, Lq, Lk), key_padding_mask=kpm)

save("layers", out)
