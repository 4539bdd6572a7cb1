"""Reference matching, losses, gradients and post-processing for DETR and Deformable DETR.

The matcher, SetCriterion, sigmoid_focal_loss and PostProcess below are the official code
(facebookresearch/detr models/matcher.py + detr.py, fundamentalvision/Deformable-DETR
models/matcher.py + deformable_detr.py + segmentation.py), trimmed of distributed and mask parts.
Writes tests/data/set_criterion.safetensors.
"""
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from common import save


def box_cxcywh_to_xyxy(x):
    x_c, y_c, w, h = x.unbind(-1)
    return torch.stack([(x_c - 0.5 * w), (y_c - 0.5 * h), (x_c + 0.5 * w), (y_c + 0.5 * h)], dim=-1)


def box_area(boxes):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1, boxes2):
    area1, area2 = box_area(boxes1), box_area(boxes2)
    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    union = area1[:, None] + area2 - inter
    return inter / union, union


def generalized_box_iou(boxes1, boxes2):
    assert (boxes1[:, 2:] >= boxes1[:, :2]).all()
    assert (boxes2[:, 2:] >= boxes2[:, :2]).all()
    iou, union = box_iou(boxes1, boxes2)
    lt = torch.min(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    area = wh[:, :, 0] * wh[:, :, 1]
    return iou - (area - union) / area


class HungarianMatcher(nn.Module):
    def __init__(self, cost_class=1, cost_bbox=1, cost_giou=1, focal=False):
        super().__init__()
        self.cost_class, self.cost_bbox, self.cost_giou, self.focal = cost_class, cost_bbox, cost_giou, focal

    @torch.no_grad()
    def forward(self, outputs, targets):
        bs, num_queries = outputs["pred_logits"].shape[:2]
        if self.focal:
            out_prob = outputs["pred_logits"].flatten(0, 1).sigmoid()
        else:
            out_prob = outputs["pred_logits"].flatten(0, 1).softmax(-1)
        out_bbox = outputs["pred_boxes"].flatten(0, 1)
        tgt_ids = torch.cat([v["labels"] for v in targets])
        tgt_bbox = torch.cat([v["boxes"] for v in targets])
        if self.focal:
            alpha, gamma = 0.25, 2.0
            neg_cost_class = (1 - alpha) * (out_prob ** gamma) * (-(1 - out_prob + 1e-8).log())
            pos_cost_class = alpha * ((1 - out_prob) ** gamma) * (-(out_prob + 1e-8).log())
            cost_class = pos_cost_class[:, tgt_ids] - neg_cost_class[:, tgt_ids]
        else:
            cost_class = -out_prob[:, tgt_ids]
        cost_bbox = torch.cdist(out_bbox, tgt_bbox, p=1)
        cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(out_bbox), box_cxcywh_to_xyxy(tgt_bbox))
        C = self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou
        C = C.view(bs, num_queries, -1).cpu()
        sizes = [len(v["boxes"]) for v in targets]
        indices = [linear_sum_assignment(c[i]) for i, c in enumerate(C.split(sizes, -1))]
        return [(torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64)) for i, j in indices]


def sigmoid_focal_loss(inputs, targets, num_boxes, alpha=0.25, gamma=2):
    prob = inputs.sigmoid()
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss.mean(1).sum() / num_boxes


@torch.no_grad()
def accuracy(output, target, topk=(1,)):
    if target.numel() == 0:
        return [torch.zeros([], device=output.device)]
    maxk = max(topk)
    batch_size = target.size(0)
    _, pred = output.topk(maxk, 1, True, True)
    pred = pred.t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [correct[:k].view(-1).float().sum(0).mul_(100.0 / batch_size) for k in topk]


class SetCriterion(nn.Module):
    def __init__(self, num_classes, matcher, weight_dict, eos_coef, focal):
        super().__init__()
        self.num_classes, self.matcher, self.weight_dict, self.focal = num_classes, matcher, weight_dict, focal
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    def loss_labels(self, outputs, targets, indices, num_boxes, log=True):
        src_logits = outputs["pred_logits"]
        idx = self._get_src_permutation_idx(indices)
        target_classes_o = torch.cat([t["labels"][J] for t, (_, J) in zip(targets, indices)])
        target_classes = torch.full(src_logits.shape[:2], self.num_classes, dtype=torch.int64)
        target_classes[idx] = target_classes_o
        if self.focal:
            onehot = torch.zeros([src_logits.shape[0], src_logits.shape[1], src_logits.shape[2] + 1],
                                 dtype=src_logits.dtype)
            onehot.scatter_(2, target_classes.unsqueeze(-1), 1)
            onehot = onehot[:, :, :-1]
            loss_ce = sigmoid_focal_loss(src_logits, onehot, num_boxes, alpha=0.25, gamma=2) * src_logits.shape[1]
        else:
            loss_ce = F.cross_entropy(src_logits.transpose(1, 2), target_classes, self.empty_weight)
        losses = {"loss_ce": loss_ce}
        if log:
            losses["class_error"] = 100 - accuracy(src_logits[idx], target_classes_o)[0]
        return losses

    @torch.no_grad()
    def loss_cardinality(self, outputs, targets, indices, num_boxes):
        pred_logits = outputs["pred_logits"]
        tgt_lengths = torch.as_tensor([len(v["labels"]) for v in targets])
        card_pred = (pred_logits.argmax(-1) != pred_logits.shape[-1] - 1).sum(1)
        return {"cardinality_error": F.l1_loss(card_pred.float(), tgt_lengths.float())}

    def loss_boxes(self, outputs, targets, indices, num_boxes):
        idx = self._get_src_permutation_idx(indices)
        src_boxes = outputs["pred_boxes"][idx]
        target_boxes = torch.cat([t["boxes"][i] for t, (_, i) in zip(targets, indices)], dim=0)
        loss_bbox = F.l1_loss(src_boxes, target_boxes, reduction="none")
        loss_giou = 1 - torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(src_boxes), box_cxcywh_to_xyxy(target_boxes)))
        return {"loss_bbox": loss_bbox.sum() / num_boxes, "loss_giou": loss_giou.sum() / num_boxes}

    def _get_src_permutation_idx(self, indices):
        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        src_idx = torch.cat([src for (src, _) in indices])
        return batch_idx, src_idx

    def get_all(self, outputs, targets, indices, num_boxes, log=True):
        losses = {}
        losses.update(self.loss_labels(outputs, targets, indices, num_boxes, log))
        losses.update(self.loss_cardinality(outputs, targets, indices, num_boxes))
        losses.update(self.loss_boxes(outputs, targets, indices, num_boxes))
        return losses

    def forward(self, outputs, targets):
        outputs_without_aux = {k: v for k, v in outputs.items() if k not in ("aux_outputs", "enc_outputs")}
        indices = self.matcher(outputs_without_aux, targets)
        num_boxes = max(float(sum(len(t["labels"]) for t in targets)), 1.0)
        losses = self.get_all(outputs, targets, indices, num_boxes)
        all_indices = {"final": indices}
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            ind = self.matcher(aux, targets)
            all_indices[f"aux{i}"] = ind
            l_dict = self.get_all(aux, targets, ind, num_boxes, log=False)
            losses.update({k + f"_{i}": v for k, v in l_dict.items()})
        if "enc_outputs" in outputs:
            bin_targets = [{"labels": torch.zeros_like(t["labels"]), "boxes": t["boxes"]} for t in targets]
            ind = self.matcher(outputs["enc_outputs"], bin_targets)
            all_indices["enc"] = ind
            l_dict = self.get_all(outputs["enc_outputs"], bin_targets, ind, num_boxes, log=False)
            losses.update({k + "_enc": v for k, v in l_dict.items()})
        return losses, all_indices


def postprocess_detr(out_logits, out_bbox, target_sizes):
    prob = F.softmax(out_logits, -1)
    scores, labels = prob[..., :-1].max(-1)
    boxes = box_cxcywh_to_xyxy(out_bbox)
    img_h, img_w = target_sizes.unbind(1)
    scale_fct = torch.stack([img_w, img_h, img_w, img_h], dim=1)
    return scores, labels, boxes * scale_fct[:, None, :]


def postprocess_deformable(out_logits, out_bbox, target_sizes, k=100):
    prob = out_logits.sigmoid()
    topk_values, topk_indexes = torch.topk(prob.view(out_logits.shape[0], -1), k, dim=1)
    scores = topk_values
    topk_boxes = topk_indexes // out_logits.shape[2]
    labels = topk_indexes % out_logits.shape[2]
    boxes = box_cxcywh_to_xyxy(out_bbox)
    boxes = torch.gather(boxes, 1, topk_boxes.unsqueeze(-1).repeat(1, 1, 4))
    img_h, img_w = target_sizes.unbind(1)
    scale_fct = torch.stack([img_w, img_h, img_w, img_h], dim=1)
    return scores, labels, boxes * scale_fct[:, None, :]


def random_boxes(*shape):
    c = torch.rand(*shape, 2) * 0.6 + 0.2
    wh = torch.rand(*shape, 2) * 0.35 + 0.05
    return torch.cat([c, wh], -1)


def main():
    torch.manual_seed(0)
    out = {}
    NUM_CLASSES, B, Q = 7, 3, 30
    sizes = [4, 0, 9]  # an image without objects in the middle
    targets = []
    for b, n in enumerate(sizes):
        t = {"labels": torch.randint(0, NUM_CLASSES, (n,)), "boxes": random_boxes(n)}
        targets.append(t)
        out[f"target{b}.labels"] = t["labels"]
        out[f"target{b}.boxes"] = t["boxes"]


    def run(name, focal, n_aux, two_stage):
        C = NUM_CLASSES if focal else NUM_CLASSES + 1
        weights = {"loss_ce": 2.0 if focal else 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
        matcher = HungarianMatcher(cost_class=2.0 if focal else 1.0, cost_bbox=5.0, cost_giou=2.0, focal=focal)
        crit = SetCriterion(NUM_CLASSES, matcher, weights, eos_coef=0.1, focal=focal)
        layers = []
        for l in range(n_aux + 1):
            layers.append({"pred_logits": (torch.randn(B, Q, C) * 2).requires_grad_(),
                           "pred_boxes": random_boxes(B, Q).requires_grad_()})
        outputs = dict(layers[-1])
        outputs["aux_outputs"] = layers[:-1]
        if two_stage:
            enc = {"pred_logits": (torch.randn(B, Q, C) * 2).requires_grad_(), "pred_boxes": random_boxes(B, Q).requires_grad_()}
            outputs["enc_outputs"] = enc
        losses, indices = crit(outputs, targets)
        total = sum(losses[k] * weights[k.rsplit("_", 1)[0] if k.rsplit("_", 1)[-1].isdigit() or k.endswith("_enc") else k]
                    for k in losses if k.startswith("loss"))
        total.backward()
        out[f"{name}.total"] = total.detach().reshape([])
        for k, v in losses.items():
            out[f"{name}.{k}"] = v.detach().reshape([]).float()
        for l, lay in enumerate(layers):
            out[f"{name}.layer{l}.logits"] = lay["pred_logits"]
            out[f"{name}.layer{l}.boxes"] = lay["pred_boxes"]
            out[f"{name}.layer{l}.grad_logits"] = lay["pred_logits"].grad
            out[f"{name}.layer{l}.grad_boxes"] = lay["pred_boxes"].grad
        if two_stage:
            out[f"{name}.enc.logits"] = enc["pred_logits"]
            out[f"{name}.enc.boxes"] = enc["pred_boxes"]
            out[f"{name}.enc.grad_logits"] = enc["pred_logits"].grad
            out[f"{name}.enc.grad_boxes"] = enc["pred_boxes"].grad
        for key, ind in indices.items():
            for b, (i, j) in enumerate(ind):
                out[f"{name}.indices.{key}.{b}.query"] = i
                out[f"{name}.indices.{key}.{b}.target"] = j
        return layers[-1]


    detr_final = run("detr", focal=False, n_aux=2, two_stage=False)
    deform_final = run("deformable", focal=True, n_aux=2, two_stage=True)

    sizes_hw = torch.tensor([[480, 640], [600, 400], [333, 517]], dtype=torch.float32)
    out["image_sizes"] = sizes_hw
    s, l, bx = postprocess_detr(detr_final["pred_logits"].detach(), detr_final["pred_boxes"].detach(), sizes_hw)
    out["post_detr.scores"], out["post_detr.labels"], out["post_detr.boxes"] = s, l, bx
    s, l, bx = postprocess_deformable(deform_final["pred_logits"].detach(), deform_final["pred_boxes"].detach(), sizes_hw, k=100)
    out["post_deformable.scores"], out["post_deformable.labels"], out["post_deformable.boxes"] = s, l, bx
    save("set_criterion", out)


if __name__ == "__main__":
    main()
