"""PyTorch twin of bench_detr_step.cpp: one DETR training step without the backbone, with the
official code (tests/reference/: facebookresearch/detr's Transformer, HungarianMatcher with
scipy, SetCriterion with aux losses), clip_grad_norm_ 0.1 and AdamW. d 256, 8 heads, FFN 2048,
6 + 6 layers, dropout 0.1, 100 queries, 91 classes; B = 2 maps of 25x34 (the second padded from
25x28), 6 and 9 objects. At its best: 2 threads, warm-up, need_weights=False in every attention.
Prints `train_step <median ms>`."""
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "reference"))
from make_detr_model import MLP  # noqa: E402
from make_detr_transformer import Transformer  # noqa: E402
from make_position_encoding import PositionEmbeddingSine  # noqa: E402
from make_set_criterion import HungarianMatcher, SetCriterion, random_boxes  # noqa: E402

_mha_forward = nn.MultiheadAttention.forward


def _no_weights(self, *args, **kwargs):  # the official code asks for the averaged weights
    kwargs["need_weights"] = False
    return _mha_forward(self, *args, **kwargs)


nn.MultiheadAttention.forward = _no_weights
torch.set_num_threads(2)
torch.manual_seed(0)
D, CLASSES, Q, B, h, w = 256, 91, 100, 2, 25, 34
transformer = Transformer(d_model=D, nhead=8, num_encoder_layers=6, num_decoder_layers=6, dim_feedforward=2048,
                          dropout=0.1, return_intermediate_dec=True).train()
query_embed = nn.Embedding(Q, D)
class_embed = nn.Linear(D, CLASSES + 1)
bbox_embed = MLP(D, D, 4, 3)
modules = nn.ModuleList([transformer, query_embed, class_embed, bbox_embed])
mask = torch.zeros(B, h, w, dtype=torch.bool)
mask[1, :, 28:] = True
pos = PositionEmbeddingSine(D // 2, normalize=True)(mask)
src = torch.randn(B, D, h, w)
targets = [{"labels": torch.randint(0, CLASSES, (n,)), "boxes": random_boxes(n)} for n in (6, 9)]
weights = {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
criterion = SetCriterion(CLASSES, HungarianMatcher(1.0, 5.0, 2.0), weights, eos_coef=0.1, focal=False)
opt = torch.optim.AdamW(modules.parameters(), lr=1e-4, weight_decay=1e-4)


def step():
    hs = transformer(src, mask, query_embed.weight, pos)[0]
    logits, boxes = class_embed(hs), bbox_embed(hs).sigmoid()
    outputs = {"pred_logits": logits[-1], "pred_boxes": boxes[-1],
               "aux_outputs": [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])]}
    losses, _ = criterion(outputs, targets)
    total = sum(v * weights[k.rsplit("_", 1)[0] if k.rsplit("_", 1)[-1].isdigit() else k]
                for k, v in losses.items() if k.startswith("loss"))
    opt.zero_grad()
    total.backward()
    torch.nn.utils.clip_grad_norm_(modules.parameters(), 0.1)
    opt.step()


reps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
times = []
for i in range(reps + 2):
    t0 = time.perf_counter()
    step()
    if i >= 2:
        times.append((time.perf_counter() - t0) * 1e3)
print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
print(f"train_step {statistics.median(times):.3f}")
