#!/usr/bin/env python3
"""pycocotools twin of cocoeval_bench: evaluate <dir>/dt.json against <dir>/gt.json.

Timed as the C++ side: loadRes + evaluate + accumulate + summarize, GT loaded once.
Prints one json line: {"median_s": ..., "runs": [...], "stats": [12 numbers]}.
"""
import contextlib
import io
import json
import sys
import time

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def main():
    d = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(f"{d}/gt.json")
    runs, stats = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(f"{d}/dt.json")
            ev = COCOeval(gt, dt, "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        runs.append(time.perf_counter() - t0)
        stats = [float(s) for s in ev.stats]
    print(json.dumps({"median_s": sorted(runs)[len(runs) // 2], "runs": runs, "stats": stats}))


if __name__ == "__main__":
    main()
