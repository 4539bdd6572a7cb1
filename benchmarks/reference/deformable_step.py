"""PyTorch twin of bench_deformable_step.cpp: one Deformable DETR training step without the
backbone. The official DeformableTransformer (d 256, 8 heads, FFN 1024, 6 + 6 layers, 4 levels of
64x64 / 32x32 / 16x16 / 8x8, 4 points, 300 queries, dropout 0.1, training mode; MSDeformAttn on the
grid_sample core, the official CPU path) with DeformableDETR's shared class / box heads on every
decoder layer, the official focal SetCriterion + HungarianMatcher (8 objects per image, B = 2),
backward and torch.optim.AdamW. The modules come from tests/reference/make_deformable_detr.py
(the official code). Prints `train <median ms>`; runs at its best (2 threads, warm-up, medians)."""
import math
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "reference"))
import make_deformable_detr as R  # noqa: E402

torch.set_num_threads(2)
torch.manual_seed(0)
D, Q, CLASSES, B, OBJECTS = 256, 300, 91, 2, 8
SIZES = [64, 32, 16, 8]


class TransformerAndHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer = R.DeformableTransformer(d_model=D, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                                                   dim_feedforward=1024, dropout=0.1, activation="relu",
                                                   return_intermediate_dec=True, num_feature_levels=4,
                                                   dec_n_points=4, enc_n_points=4)
        self.class_embed = nn.Linear(D, CLASSES)
        self.class_embed.bias.data = torch.ones(CLASSES) * -math.log(99)
        self.bbox_embed = R.MLP(D, D, 4, 3)
        self.query_embed = nn.Embedding(Q, 2 * D)

    def forward(self, srcs, masks, pos):
        hs, init_reference, inter_references, _, _ = self.transformer(srcs, masks, pos, self.query_embed.weight)
        outputs = []
        for lvl in range(hs.shape[0]):
            reference = R.inverse_sigmoid(init_reference if lvl == 0 else inter_references[lvl - 1])
            tmp = self.bbox_embed(hs[lvl])
            tmp[..., :2] += reference
            outputs.append({"pred_logits": self.class_embed(hs[lvl]), "pred_boxes": tmp.sigmoid()})
        out = dict(outputs[-1])
        out["aux_outputs"] = outputs[:-1]
        return out


def main(reps):
    model = TransformerAndHeads().train()
    position = R.PositionEmbeddingSine(D // 2, normalize=True)
    masks = [torch.zeros(B, s, s, dtype=torch.bool) for s in SIZES]
    srcs = [torch.randn(B, D, s, s) for s in SIZES]
    pos = [position(R.NestedTensor(x, m)) for x, m in zip(srcs, masks)]
    targets = [{"labels": torch.randint(0, CLASSES, (OBJECTS,)),
                "boxes": torch.cat([torch.rand(OBJECTS, 2) * 0.6 + 0.2, torch.rand(OBJECTS, 2) * 0.35 + 0.05], -1)}
               for _ in range(B)]
    weights = {"loss_ce": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    criterion = R.SetCriterion(CLASSES, R.HungarianMatcher(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, focal=True),
                               weights, eos_coef=0.1, focal=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    times = []
    for i in range(reps + 1):
        t0 = time.perf_counter()
        losses, _ = criterion(model(srcs, masks, pos), targets)
        total = sum(v * weights[k.rsplit("_", 1)[0] if k.rsplit("_", 1)[-1].isdigit() else k]
                    for k, v in losses.items() if k.startswith("loss"))
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if i >= 1:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


if __name__ == "__main__":
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"train {main(reps):.3f}")
