"""Shared helpers for the PyTorch reference scripts.

Each script builds a module in PyTorch (CPU, fixed seeds), runs it, and stores inputs, weights
(official parameter names), outputs and gradients in tests/data/<name>.safetensors for the C++
parity tests. Run with the python that has torch (Debian: /usr/bin/python3 with python3-torch).
Building and testing never need torch.
"""
import json
import os
import struct

import numpy as np

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")

_DTYPES = {np.dtype("float32"): "F32", np.dtype("float64"): "F64",
           np.dtype("int64"): "I64", np.dtype("bool"): "BOOL"}


def _as_numpy(t):
    try:
        import torch
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous().numpy()
    except ImportError:
        pass
    # ascontiguousarray turns 0-d arrays into shape (1,); keep scalars (losses) of shape [].
    a = np.ascontiguousarray(t).reshape(np.shape(t))
    if a.dtype not in _DTYPES:
        raise TypeError(f"unsupported dtype {a.dtype}")
    return a


def save(name, tensors, metadata=None):
    """Write tests/data/<name>.safetensors (names sorted, 8-byte aligned header)."""
    arrays = {k: _as_numpy(v) for k, v in sorted(tensors.items())}
    header, off = {}, 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for k, a in arrays.items():
        header[k] = {"dtype": _DTYPES[a.dtype], "shape": list(a.shape),
                     "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(DATA_DIR, exist_ok=True)
    path = os.path.join(DATA_DIR, name + ".safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for a in arrays.values():
            f.write(a.tobytes())
    print(f"wrote {path} ({off} bytes of tensors)")
