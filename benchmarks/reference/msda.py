"""PyTorch twin of bench_ms_deform_attn.cpp: the grid_sample reference ms_deform_attn_core_pytorch
(the official CPU path; their native op has no CPU kernel) at levels 64x64/32x32/16x16/8x8
(S = 5440), B = 2, H = 8, D = 32, L = 4, P = 4; encoder (Q = 5440) and decoder (Q = 300).
Samples around each query's reference point (offsets ~ N(0, 2 pixels)), as in the C++ benchmark.
Prints one line per case: `<case> <median ms>`; runs at its best (2 threads, warm-up, medians)."""
import statistics
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
torch.manual_seed(0)
B, H, D, L, P = 2, 8, 32, 4, 4
SIZES = [64, 32, 16, 8]


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


def inputs(encoder):
    shapes = [(s, s) for s in SIZES]
    S = sum(h * w for h, w in shapes)
    Q = S if encoder else 300
    value = torch.randn(B, S, H, D)
    if encoder:
        refs = []
        for s in SIZES:
            y, x = torch.meshgrid(torch.arange(s) + 0.5, torch.arange(s) + 0.5, indexing="ij")
            refs.append(torch.stack([x.reshape(-1) / s, y.reshape(-1) / s], -1))
        ref = torch.cat(refs)
    else:
        ref = torch.rand(Q, 2)
    size = torch.tensor(SIZES, dtype=torch.float32)[:, None, None]  # [L, 1, 1]
    loc = ref[None, :, None, None, None, :] + torch.randn(B, Q, H, L, P, 2) * 2 / size
    attn = torch.rand(B, Q, H, L, P)
    attn = attn / attn.sum((-1, -2), keepdim=True)
    return value, shapes, loc, attn


def case(encoder, backward, reps):
    value, shapes, loc, attn = inputs(encoder)
    if backward:
        for t in (value, loc, attn):
            t.requires_grad_(True)
    times = []
    for i in range(reps + 2):
        t0 = time.perf_counter()
        if backward:
            y = ms_deform_attn_core_pytorch(value, shapes, loc, attn)
            y.backward(torch.ones_like(y))
            value.grad = loc.grad = attn.grad = None
        else:
            with torch.no_grad():
                y = ms_deform_attn_core_pytorch(value, shapes, loc, attn)
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


reps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
print(f"encoder_forward {case(True, False, reps):.3f}")
print(f"encoder_forward_backward {case(True, True, reps):.3f}")
print(f"decoder_forward {case(False, False, reps):.3f}")
print(f"decoder_forward_backward {case(False, True, reps):.3f}")
