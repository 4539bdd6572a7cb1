"""Twin of bench_matcher.cpp: scipy's linear_sum_assignment on the same sizes, and DETR's
HungarianMatcher (torch costs on the flattened batch + scipy per image) for 2 x 300 queries,
20 targets each, 91 classes + no-object. Prints `<case> <median us>`."""
import statistics
import sys
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, __file__.rsplit("/", 3)[0] + "/tests/reference")
from make_set_criterion import HungarianMatcher  # noqa: E402  (the official matcher code)

torch.set_num_threads(2)


def median_us(f, reps):
    for _ in range(3):
        f()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        t.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(t)


reps = int(sys.argv[1]) if len(sys.argv) > 1 else 50
rng = np.random.default_rng(0)
for nr, nc in [(100, 20), (300, 50), (900, 100)]:
    c = rng.random((nr, nc))
    print(f"lsa/{nr}/{nc} {median_us(lambda: linear_sum_assignment(c), reps):.2f}")

torch.manual_seed(1)
B, Q, T, C = 2, 300, 20, 92


def boxes(*shape):
    return torch.cat([torch.rand(*shape, 2) * 0.6 + 0.2, torch.rand(*shape, 2) * 0.35 + 0.05], -1)


outputs = {"pred_logits": torch.randn(B, Q, C), "pred_boxes": boxes(B, Q)}
targets = [{"labels": torch.randint(0, C - 1, (T,)), "boxes": boxes(T)} for _ in range(B)]
matcher = HungarianMatcher(cost_class=1, cost_bbox=5, cost_giou=2)
print(f"matcher {median_us(lambda: matcher(outputs, targets), reps):.2f}")
