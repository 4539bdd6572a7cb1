"""Reference positional encodings: DETR's PositionEmbeddingSine / PositionEmbeddingLearned
(facebookresearch/detr models/position_encoding.py) and Deformable DETR's sine variant (the
-0.5 offset before normalising), on a padded batch.

Writes tests/data/position_encoding.safetensors: `mask` (bool [B, H, W], true on padding),
`sine.out` (DETR, normalize=True), `sine_deformable.out` (Deformable DETR, normalize=True),
`sine_raw.out` (normalize=False), and for the learned one `learned.row_embed.weight`,
`learned.col_embed.weight`, `learned.grad_out`, `learned.out`, `learned.grad.*`. float32, CPU.
"""
import math

import torch
from torch import nn

from common import save

torch.manual_seed(0)


class PositionEmbeddingSine(nn.Module):
    """DETR's, with Deformable DETR's `offset` (-0.5) as an option (its file has the same class
    with `y_embed = (y_embed - 0.5) / (y_embed[:, -1:, :] + eps) * self.scale`)."""

    def __init__(self, num_pos_feats=64, temperature=10000, normalize=False, scale=None,
                 deformable=False):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self.offset = -0.5 if deformable else 0.0

    def forward(self, mask):
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = (y_embed + self.offset) / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = (x_embed + self.offset) / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)
        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class PositionEmbeddingLearned(nn.Module):
    def __init__(self, num_pos_feats=256):
        super().__init__()
        self.row_embed = nn.Embedding(50, num_pos_feats)
        self.col_embed = nn.Embedding(50, num_pos_feats)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, mask):
        h, w = mask.shape[-2:]
        i = torch.arange(w)
        j = torch.arange(h)
        x_emb = self.col_embed(i)
        y_emb = self.row_embed(j)
        return torch.cat([
            x_emb.unsqueeze(0).repeat(h, 1, 1),
            y_emb.unsqueeze(1).repeat(1, w, 1),
        ], dim=-1).permute(2, 0, 1).unsqueeze(0).repeat(mask.shape[0], 1, 1, 1)


if __name__ == "__main__":  # importable: later scripts reuse the classes above
    B, H, W, N = 3, 7, 10, 16
    mask = torch.ones(B, H, W, dtype=torch.bool)
    for b, (h, w) in enumerate([(7, 10), (4, 9), (6, 3)]):
        mask[b, :h, :w] = False
    out = {"mask": mask}
    out["sine.out"] = PositionEmbeddingSine(N, normalize=True)(mask)
    out["sine_deformable.out"] = PositionEmbeddingSine(N, normalize=True, deformable=True)(mask)
    out["sine_raw.out"] = PositionEmbeddingSine(N, normalize=False)(mask)

    learned = PositionEmbeddingLearned(N)
    pos = learned(mask)
    g = torch.randn_like(pos)
    pos.backward(g)
    out["learned.out"] = pos
    out["learned.grad_out"] = g
    for k, p in learned.named_parameters():
        out[f"learned.{k}"] = p.detach().clone()
        out[f"learned.grad.{k}"] = p.grad
    save("position_encoding", out)
