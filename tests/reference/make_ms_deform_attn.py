"""Reference outputs and gradients for multi-scale deformable attention.

Writes tests/data/ms_deform_attn.safetensors:
- op cases `op_<case>.*`: the grid_sample reference ms_deform_attn_core_pytorch (Deformable DETR,
  models/ops/functions/ms_deform_attn_func.py) on value, spatial_shapes, level_start_index,
  sampling_locations (some on the borders and outside the maps), attention_weights, with a fixed
  upstream gradient; stores out and grad.{value, sampling_locations, attention_weights}.
- layer cases `<case>.*`: the official MSDeformAttn module (models/ops/modules/ms_deform_attn.py)
  with the CUDA function replaced by the same reference core, random weights, 2-d reference points
  and 4-d reference boxes, with and without a padding mask; stores inputs, parameters (state_dict
  names), out, and the gradients of the inputs and parameters.
- `init.*`: the parameters right after the official _reset_parameters (d_model 16, 3 levels,
  2 heads, 2 points), for the initialisation test.
float32, CPU, fixed seeds.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.init import constant_, xavier_uniform_

from common import save

torch.manual_seed(0)
out = {}


def ms_deform_attn_core_pytorch(value, value_spatial_shapes, sampling_locations, attention_weights):
    N_, S_, M_, D_ = value.shape
    _, Lq_, M_, L_, P_, _ = sampling_locations.shape
    value_list = value.split([H_ * W_ for H_, W_ in value_spatial_shapes], dim=1)
    sampling_grids = 2 * sampling_locations - 1
    sampling_value_list = []
    for lid_, (H_, W_) in enumerate(value_spatial_shapes):
        value_l_ = value_list[lid_].flatten(2).transpose(1, 2).reshape(N_ * M_, D_, H_, W_)
        sampling_grid_l_ = sampling_grids[:, :, :, lid_].transpose(1, 2).flatten(0, 1)
        sampling_value_l_ = F.grid_sample(value_l_, sampling_grid_l_,
                                          mode='bilinear', padding_mode='zeros', align_corners=False)
        sampling_value_list.append(sampling_value_l_)
    attention_weights = attention_weights.transpose(1, 2).reshape(N_ * M_, 1, Lq_, L_ * P_)
    output = (torch.stack(sampling_value_list, dim=-2).flatten(-2) * attention_weights).sum(-1).view(N_, M_ * D_, Lq_)
    return output.transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """The official module, verbatim but for the core call (the reference instead of CUDA)."""

    def __init__(self, d_model=256, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self):
        constant_(self.sampling_offsets.weight.data, 0.)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid_init = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid_init = (grid_init / grid_init.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid_init[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias = nn.Parameter(grid_init.view(-1))
        constant_(self.attention_weights.weight.data, 0.)
        constant_(self.attention_weights.bias.data, 0.)
        xavier_uniform_(self.value_proj.weight.data)
        constant_(self.value_proj.bias.data, 0.)
        xavier_uniform_(self.output_proj.weight.data)
        constant_(self.output_proj.bias.data, 0.)

    def forward(self, query, reference_points, input_flatten, input_spatial_shapes, input_level_start_index, input_padding_mask=None):
        N, Len_q, _ = query.shape
        N, Len_in, _ = input_flatten.shape
        assert (input_spatial_shapes[:, 0] * input_spatial_shapes[:, 1]).sum() == Len_in
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], float(0))
        value = value.view(N, Len_in, self.n_heads, self.d_model // self.n_heads)
        sampling_offsets = self.sampling_offsets(query).view(N, Len_q, self.n_heads, self.n_levels, self.n_points, 2)
        attention_weights = self.attention_weights(query).view(N, Len_q, self.n_heads, self.n_levels * self.n_points)
        attention_weights = F.softmax(attention_weights, -1).view(N, Len_q, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] == 2:
            offset_normalizer = torch.stack([input_spatial_shapes[..., 1], input_spatial_shapes[..., 0]], -1)
            sampling_locations = reference_points[:, :, None, :, None, :] \
                + sampling_offsets / offset_normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            sampling_locations = reference_points[:, :, None, :, None, :2] \
                + sampling_offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5
        else:
            raise ValueError(
                'Last dim of reference_points must be 2 or 4, but get {} instead.'.format(reference_points.shape[-1]))
        output = ms_deform_attn_core_pytorch(value, input_spatial_shapes, sampling_locations, attention_weights)
        output = self.output_proj(output)
        return output


def shapes_and_starts(shapes):
    ss = torch.as_tensor(shapes, dtype=torch.long)
    starts = torch.cat((ss.new_zeros((1,)), ss.prod(1).cumsum(0)[:-1]))
    return ss, starts


def op_case(name, B, Q, H, D, shapes, P):
    ss, starts = shapes_and_starts(shapes)
    S, L = int(ss.prod(1).sum()), len(shapes)
    value = torch.randn(B, S, H, D, requires_grad=True)
    # Locations over [-0.15, 1.15]: inside, on the borders (a neighbour outside) and wholly outside.
    loc = (torch.rand(B, Q, H, L, P, 2) * 1.3 - 0.15).requires_grad_(True)
    attn = torch.rand(B, Q, H, L, P)
    attn = (attn / attn.sum((-1, -2), keepdim=True)).requires_grad_(True)
    y = ms_deform_attn_core_pytorch(value, ss, loc, attn)
    g = torch.randn_like(y)
    y.backward(g)
    p = f"op_{name}."
    out.update({p + "value": value, p + "spatial_shapes": ss, p + "level_start_index": starts,
                p + "sampling_locations": loc, p + "attention_weights": attn, p + "out": y, p + "grad_out": g,
                p + "grad.value": value.grad, p + "grad.sampling_locations": loc.grad,
                p + "grad.attention_weights": attn.grad})


def randomise(m):
    """Random weights, so that offsets and attention weights depend on the query."""
    with torch.no_grad():
        for k, p in m.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if k.endswith("weight") else 0.2))


def layer_case(name, m, B, Q, shapes, ref_dim, masked):
    ss, starts = shapes_and_starts(shapes)
    S, L = int(ss.prod(1).sum()), len(shapes)
    query = torch.randn(B, Q, m.d_model, requires_grad=True)
    src = torch.randn(B, S, m.d_model, requires_grad=True)
    if ref_dim == 2:
        ref = torch.rand(B, Q, L, 2)
    else:
        ref = torch.cat([torch.rand(B, Q, L, 2), torch.rand(B, Q, L, 2) * 0.5 + 0.05], -1)
    ref.requires_grad_(True)
    mask = torch.rand(B, S) < 0.25 if masked else None
    y = m(query, ref, src, ss, starts, mask)
    g = torch.randn_like(y)
    y.backward(g)
    p = name + "."
    out.update({p + "query": query, p + "reference_points": ref, p + "input_flatten": src,
                p + "spatial_shapes": ss, p + "level_start_index": starts, p + "out": y, p + "grad_out": g,
                p + "grad.query": query.grad, p + "grad.reference_points": ref.grad,
                p + "grad.input_flatten": src.grad})
    if masked:
        out[p + "input_padding_mask"] = mask
    for k, prm in m.state_dict(keep_vars=True).items():
        out[p + k] = prm.detach().clone()
        out[p + "grad." + k] = prm.grad.clone()
    m.zero_grad(set_to_none=True)


# The op: encoder-like (Q = S, several levels) and decoder-like (few queries, more points).
op_case("encoder", B=2, Q=64, H=2, D=4, shapes=[[6, 8], [3, 4], [2, 2]], P=2)
op_case("decoder", B=2, Q=7, H=3, D=8, shapes=[[5, 7], [3, 3]], P=4)

init = MSDeformAttn(16, 3, 2, 2)
for k, prm in init.state_dict().items():
    out["init." + k] = prm.clone()

enc = MSDeformAttn(16, 3, 2, 2)
randomise(enc)
layer_case("layer_encoder_2d", enc, B=2, Q=60, shapes=[[6, 7], [3, 4], [2, 3]], ref_dim=2, masked=False)
layer_case("layer_encoder_2d_mask", enc, B=2, Q=60, shapes=[[6, 7], [3, 4], [2, 3]], ref_dim=2, masked=True)
dec = MSDeformAttn(16, 2, 4, 3)
randomise(dec)
layer_case("layer_decoder_2d", dec, B=2, Q=5, shapes=[[7, 5], [4, 3]], ref_dim=2, masked=False)
layer_case("layer_decoder_4d_mask", dec, B=2, Q=5, shapes=[[7, 5], [4, 3]], ref_dim=4, masked=True)

save("ms_deform_attn", out)
