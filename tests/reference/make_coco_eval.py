#!/usr/bin/env python3
"""Reference numbers for tests/test_coco_eval.cpp, computed by pycocotools' COCOeval.

Dev tool only (pip install pycocotools numpy); the C++ build and tests never need it.
Writes tests/data/coco_eval_{gt,dt,expected}.json. The ground truth and detections are drawn
with a fixed seed to hit every rule of COCOeval:
  - crowd boxes (matched by intersection / detection area, matchable many times, ignored);
  - 'area' in the json different from w * h (area ranges use the json area for GT);
  - GT and detections in all three area ranges;
  - images without GT (with and without detections), a category without detections,
    a category without GT (its AP is -1 and it is left out of the means);
  - detections on images that have no GT; many score ties (scores on a 0.05 grid);
  - images with more than 100 detections of one category (maxDets truncation).
"""
import json
import os
import sys

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data")


def make(seed=5):
    rng = np.random.default_rng(seed)
    cat_ids = [1, 3, 7, 12, 25, 40, 90]  # 40: GT but no detections; 90: no GT at all
    images, anns, dets = [], [], []
    ann_id = 1
    for n in range(48):
        img_id = int(1000 + 7 * n + rng.integers(0, 5))
        W, H = int(rng.integers(120, 640)), int(rng.integers(120, 640))
        images.append({"id": img_id, "file_name": f"{img_id}.jpg", "width": W, "height": H})
        n_gt = 0 if n % 9 == 4 else int(rng.integers(1, 12))
        gts = []
        for _ in range(n_gt):
            # log-uniform sides so small / medium / large all occur
            w = float(np.exp(rng.uniform(np.log(4), np.log(W * 0.8))))
            h = float(np.exp(rng.uniform(np.log(4), np.log(H * 0.8))))
            x = float(rng.uniform(0, W - w)); y = float(rng.uniform(0, H - h))
            box = [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]
            cat = int(rng.choice(cat_ids[:6]))
            crowd = int(rng.uniform() < 0.12)
            area = round(box[2] * box[3] * float(rng.uniform(0.5, 1.0)), 3)
            anns.append({"id": ann_id, "image_id": img_id, "category_id": cat, "bbox": box,
                         "area": area, "iscrowd": crowd})
            ann_id += 1
            gts.append((box, cat))
        for box, cat in gts:
            if cat == 40:
                continue
            for _ in range(int(rng.integers(0, 3))):
                j = [box[0] + rng.normal(0, 0.1 * box[2]), box[1] + rng.normal(0, 0.1 * box[3]),
                     box[2] * float(np.exp(rng.normal(0, 0.15))),
                     box[3] * float(np.exp(rng.normal(0, 0.15)))]
                dets.append({"image_id": img_id, "category_id": cat,
                             "bbox": [round(float(v), 2) for v in j],
                             "score": round(float(rng.integers(1, 20)) * 0.05, 2)})
        n_fp = int(rng.integers(0, 6))
        if n % 13 == 6:
            n_fp = 130  # more than maxDets = 100 for one category
        for _ in range(n_fp):
            w = float(rng.uniform(3, W / 2)); h = float(rng.uniform(3, H / 2))
            cat = 12 if n_fp > 100 else int(rng.choice([1, 3, 7, 12, 25]))
            dets.append({"image_id": img_id, "category_id": cat,
                         "bbox": [round(float(rng.uniform(0, W - w)), 2),
                                  round(float(rng.uniform(0, H - h)), 2), round(w, 2), round(h, 2)],
                         "score": round(float(rng.integers(1, 20)) * 0.05, 2)})
    cats = [{"id": c, "name": f"class_{c}"} for c in cat_ids]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def evaluate(gt_path, dt_path):
    gt = COCO(gt_path)
    dt = gt.loadRes(dt_path)
    ev = COCOeval(gt, dt, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    per_cat = {}
    for k, cat in enumerate(ev.params.catIds):
        p = ev.eval["precision"][:, :, k, 0, -1]
        per_cat[str(cat)] = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
    return [float(s) for s in ev.stats], per_cat


def main():
    gt, dets = make()
    os.makedirs(OUT, exist_ok=True)
    gt_path = os.path.join(OUT, "coco_eval_gt.json")
    dt_path = os.path.join(OUT, "coco_eval_dt.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f, separators=(",", ":"))
    with open(dt_path, "w") as f:
        json.dump(dets, f, separators=(",", ":"))
    stats, per_cat = evaluate(gt_path, dt_path)
    with open(os.path.join(OUT, "coco_eval_expected.json"), "w") as f:
        json.dump({"stats": stats, "per_category_ap": per_cat}, f, indent=1)
    print(f"{len(gt['images'])} images, {len(gt['annotations'])} GT, {len(dets)} detections",
          file=sys.stderr)


if __name__ == "__main__":
    main()
