"""Reference for the whole DETR model (tests/test_detr_model.cpp).

facebookresearch/detr models/detr.py's DETR and models/backbone.py's Backbone + Joiner, around
the classes the other reference scripts copied from the official code: the ResNet
(make_resnet.py, FrozenBatchNorm2d as DETR uses it), the sine encoding (make_position_encoding.py,
normalize=True) and the post-norm transformer (make_detr_transformer.py). SetCriterion and
HungarianMatcher come from make_set_criterion.py.

A small model (ResNet-18 at 1/16 width, d_model 32, 4 heads, FFN 64, 2 + 2 layers, 10 queries,
5 classes) runs in eval mode on two images of different sizes, padded into one batch. Stored in
detr_model.safetensors: images, mask, targets; every decoder layer's logits and boxes; the losses
after matching (aux layers included) and the weighted total; gradients of the total w.r.t. the
images and a few named parameters. detr_model_weights.safetensors is the state_dict under the
official names, loaded strictly by the C++ side.
"""
import torch
import torch.nn.functional as F
from torch import nn

from common import save
from make_detr_transformer import Transformer
from make_position_encoding import PositionEmbeddingSine
from make_resnet import BasicBlock, FrozenBatchNorm2d, ResNet
from make_set_criterion import HungarianMatcher, SetCriterion, random_boxes


class MLP(nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + h, h + [output_dim]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x


class Backbone(nn.Module):
    """models/backbone.py BackboneBase with return_interm_layers=False: layer4 only."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, images, mask):
        c5 = self.body(images)[2]
        m = F.interpolate(mask[None].float(), size=c5.shape[-2:]).to(torch.bool)[0]
        return c5, m


class Joiner(nn.Sequential):
    def forward(self, images, mask):
        x, m = self[0](images, mask)
        return x, m, self[1](m).to(x.dtype)


class DETR(nn.Module):
    def __init__(self, backbone, transformer, num_classes, num_queries, num_channels):
        super().__init__()
        self.num_queries = num_queries
        self.transformer = transformer
        hidden_dim = transformer.d_model
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.input_proj = nn.Conv2d(num_channels, hidden_dim, kernel_size=1)
        self.backbone = backbone

    def forward(self, images, mask):
        src, m, pos = self.backbone(images, mask)
        hs = self.transformer(self.input_proj(src), m, self.query_embed.weight, pos)[0]
        outputs_class = self.class_embed(hs)
        outputs_coord = self.bbox_embed(hs).sigmoid()
        return outputs_class, outputs_coord  # [L, B, Q, C + 1], [L, B, Q, 4]


def main():
    torch.manual_seed(0)
    D, H, FF, Q, NUM_CLASSES = 32, 4, 64, 10, 5
    body = ResNet(BasicBlock, [2, 2, 2, 2], 16, FrozenBatchNorm2d)
    backbone = Joiner(Backbone(body), PositionEmbeddingSine(D // 2, normalize=True))
    transformer = Transformer(d_model=D, nhead=H, num_encoder_layers=2, num_decoder_layers=2,
                              dim_feedforward=FF, dropout=0.1, return_intermediate_dec=True)
    model = DETR(backbone, transformer, NUM_CLASSES, Q, num_channels=32)
    with torch.no_grad():  # non-trivial frozen statistics and biases, so a mix-up of names shows
        for k, b in model.named_buffers():
            if "running_var" in k:
                b.uniform_(0.5, 2.0)
            elif "running_mean" in k or k.endswith(".bias"):
                b.normal_(0, 0.2)
            elif k.endswith(".weight"):
                b.uniform_(0.5, 1.5)
        for k, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    model.eval()

    # Two images, 70x90 and 52x64, padded into one 70x90 batch (the second in the top-left).
    images = torch.zeros(2, 3, 70, 90)
    mask = torch.ones(2, 70, 90, dtype=torch.bool)
    images[0] = torch.randn(3, 70, 90)
    mask[0] = False
    images[1, :, :52, :64] = torch.randn(3, 52, 64)
    mask[1, :52, :64] = False
    images.requires_grad_()

    logits, boxes = model(images, mask)
    targets = [{"labels": torch.tensor([1, 4, 0]), "boxes": random_boxes(3)},
               {"labels": torch.tensor([2, 2]), "boxes": random_boxes(2)}]
    weights = {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    matcher = HungarianMatcher(cost_class=1.0, cost_bbox=5.0, cost_giou=2.0, focal=False)
    crit = SetCriterion(NUM_CLASSES, matcher, weights, eos_coef=0.1, focal=False)
    L = logits.shape[0]
    layer = lambda l: {"pred_logits": logits[l], "pred_boxes": boxes[l]}
    outputs = dict(layer(L - 1))
    outputs["aux_outputs"] = [layer(l) for l in range(L - 1)]
    losses, indices = crit(outputs, targets)
    total = sum(v * weights[k.rsplit("_", 1)[0] if k.rsplit("_", 1)[-1].isdigit() else k]
                for k, v in losses.items() if k.startswith("loss"))
    total.backward()

    out = {"images": images, "mask": mask, "logits": logits, "boxes": boxes, "total": total.detach().reshape([]),
           "grad.images": images.grad}
    for b, t in enumerate(targets):
        out[f"target{b}.labels"] = t["labels"]
        out[f"target{b}.boxes"] = t["boxes"]
    for k, v in losses.items():
        out["loss." + k] = v.detach().reshape([]).float()
    params = dict(model.named_parameters())
    for k in ["input_proj.weight", "query_embed.weight", "class_embed.bias", "bbox_embed.layers.2.weight",
              "transformer.encoder.layers.0.self_attn.in_proj_weight", "transformer.decoder.norm.weight",
              "backbone.0.body.layer4.1.conv2.weight", "backbone.0.body.conv1.weight"]:
        out["grad." + k] = params[k].grad
    print("total", float(total), "logits", tuple(logits.shape))
    save("detr_model", out)
    save("detr_model_weights", dict(model.state_dict()))


if __name__ == "__main__":
    main()
