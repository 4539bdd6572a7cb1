#!/usr/bin/env python3
"""Markdown tables of the reference experiment (scripts/reference_experiment.sh) from its folder:
<model>.eval.json (evaluate --metrics), <model>/metrics.jsonl (train) and <model>.seconds.
Standard library only.  Usage: experiment_table.py runs/experiment"""
import json
import os
import sys

MODELS = [("detr", "DETR"), ("deformable", "Deformable DETR"),
          ("deformable-refine", "+ iterative box refinement"),
          ("deformable-two-stage", "+ two-stage")]


def fmt(v):
    return "n/a" if v is None or v < 0 else f"{100 * v:.1f}"


def main(folder):
    rows = []
    for key, name in MODELS:
        path = os.path.join(folder, key + ".eval.json")
        if not os.path.exists(path):
            print(f"({key}: no {path})", file=sys.stderr)
            continue
        ev = json.load(open(path))
        log = [json.loads(l) for l in open(os.path.join(folder, key, "metrics.jsonl")) if l.strip()]
        secs_file = os.path.join(folder, key + ".seconds")
        secs = int(open(secs_file).read()) if os.path.exists(secs_file) else None
        ips = sum(r["train_images_per_s"] for r in log) / len(log)
        rows.append((name, ev, log, secs, ips))
    if not rows:
        sys.exit(f"experiment_table.py: no <model>.eval.json in {folder}")

    print(f"COCO bbox metrics (x100) on the {rows[0][1]['images']} FashionDet val images after "
          f"{rows[0][1]['epoch']} epochs:\n")
    print("| model | AP | AP50 | AP75 | APs | APm | AR100 | train loss (last epoch) | train img/s (1 thread) | wall time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, ev, log, secs, ips in rows:
        wall = f"{secs / 60:.1f} min" if secs is not None else "n/a"
        print(f"| {name} | {fmt(ev['AP'])} | {fmt(ev['AP50'])} | {fmt(ev['AP75'])} | {fmt(ev['APs'])} | "
              f"{fmt(ev['APm'])} | {fmt(ev['AR100'])} | {log[-1]['train_loss']:.2f} | {ips:.1f} | {wall} |")

    classes = list(rows[0][1]["AP_per_class"].keys())
    print("\nAP (x100) per class:\n")
    print("| class | " + " | ".join(r[0] for r in rows) + " |")
    print("| --- |" + " --- |" * len(rows))
    for c in classes:
        print(f"| {c} | " + " | ".join(fmt(r[1]["AP_per_class"][c]) for r in rows) + " |")

    print("\nval AP (x100) by epoch (train's own evaluation):\n")
    epochs = max(len(r[2]) for r in rows)
    print("| model | " + " | ".join(f"epoch {e + 1}" for e in range(epochs)) + " |")
    print("| --- |" + " --- |" * epochs)
    for name, _, log, _, _ in rows:
        print(f"| {name} | " + " | ".join(fmt(r.get("val_AP")) for r in log) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/experiment")
