"""scipy.optimize.linear_sum_assignment on stored cost matrices (tests/data/lsa.safetensors):
random uniform costs, integer costs with many ties, and tall / wide shapes up to 900 x 100.
Costs are stored as float32; scipy solves them in float64, as our C++ does."""
import numpy as np
from scipy.optimize import linear_sum_assignment

from common import save

rng = np.random.default_rng(0)
out = {}
cases = [("u100x20", (100, 20), "uniform"), ("u300x50", (300, 50), "uniform"),
         ("u900x100", (900, 100), "uniform"), ("u20x100", (20, 100), "uniform"),
         ("t60x60", (60, 60), "ties"), ("t100x30", (100, 30), "ties"), ("n50x50", (50, 50), "normal")]
for name, shape, kind in cases:
    if kind == "uniform":
        c = rng.random(shape)
    elif kind == "ties":
        c = rng.integers(0, 5, shape).astype(np.float64)
    else:
        c = rng.normal(size=shape) * 100
    c = c.astype(np.float32)
    r, k = linear_sum_assignment(c.astype(np.float64))
    out[f"{name}.cost"] = c
    out[f"{name}.rows"] = r.astype(np.int64)
    out[f"{name}.cols"] = k.astype(np.int64)
    out[f"{name}.total"] = np.array([c.astype(np.float64)[r, k].sum()])
save("lsa", out)
