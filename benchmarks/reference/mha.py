"""PyTorch twin of bench_mha.cpp: nn.MultiheadAttention(256, 8, batch_first=True) at DETR's
encoder (B=2, L=850 self-attention) and decoder cross-attention (100 x 850) shapes.
Prints one line per case: `<case> <median ms>`; runs at its best (2 threads, warm-up,
need_weights=False, eval mode)."""
import statistics
import sys
import time

import torch

torch.set_num_threads(2)
torch.manual_seed(0)
mha = torch.nn.MultiheadAttention(256, 8, batch_first=True).eval()


def case(lq, lk, backward, reps):
    q = torch.randn(2, lq, 256, requires_grad=True)
    k = q if lq == lk else torch.randn(2, lk, 256, requires_grad=True)
    v = torch.randn(2, lk, 256, requires_grad=True)
    times = []
    for i in range(reps + 3):
        t0 = time.perf_counter()
        if backward:
            y = mha(q, k, v, need_weights=False)[0]
            y.backward(torch.ones_like(y))
            mha.zero_grad(set_to_none=True)
            q.grad = None
            v.grad = None
        else:
            with torch.no_grad():
                y = mha(q, k, v, need_weights=False)[0]
        if i >= 3:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


reps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
only = sys.argv[2] if len(sys.argv) > 2 else None  # one case by name (compare.sh contention)
print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
cases = {"encoder_forward": (850, 850, False), "encoder_forward_backward": (850, 850, True),
         "decoder_cross_forward": (100, 850, False), "decoder_cross_forward_backward": (100, 850, True)}
for name, (lq, lk, backward) in cases.items():
    if only is None or name == only:
        print(f"{name} {case(lq, lk, backward, reps):.3f}")
