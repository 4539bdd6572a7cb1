#!/usr/bin/env python3
"""Convert an official PyTorch checkpoint (.pth) to safetensors with the official names.

    python3 tools/convert_checkpoint.py r50_deformable_detr-checkpoint.pth deformable_detr.safetensors

The input is what the official training scripts save (a dict whose 'model' entry is the
state_dict; a bare state_dict works too). The output holds every tensor under its state_dict key,
except aliases: keys whose tensor is a view of the same storage as a kept key. Deformable DETR
lists its shared heads under every decoder index (class_embed.0 = class_embed.1 = ...) and, with
box refinement or two-stage, again as transformer.decoder.{bbox,class}_embed.*; the canonical
copy kept is the one outside transformer.decoder and with the lowest index, which is the name
the C++ model uses (load it with detr::load_state_dict(model, file), strict).

Needs only torch and numpy.
"""
import argparse
import json
import struct
import sys

import numpy as np
import torch

_DTYPES = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("float16"): "F16",
           np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("bool"): "BOOL",
           np.dtype("uint8"): "U8"}
_ALIAS_PREFIXES = ("transformer.decoder.bbox_embed.", "transformer.decoder.class_embed.")


def load_state_dict(path):
    ckpt = torch.load(path, map_location="cpu")
    if isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt["model"], dict):
        ckpt = ckpt["model"]
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ValueError(f"{path}: expected a state_dict or a dict with a 'model' state_dict")
    return ckpt


def drop_aliases(state_dict):
    """(kept, dropped): kept maps names to tensors, dropped maps each alias to the kept name."""
    # A stable sort: the official order, with the decoder's aliases of the heads last.
    items = sorted(state_dict.items(), key=lambda item: item[0].startswith(_ALIAS_PREFIXES))
    seen, kept, dropped = {}, {}, {}
    for name, t in items:
        ident = (t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() > 0 and ident in seen:
            dropped[name] = seen[ident]
            continue
        seen[ident] = name
        kept[name] = t
    return kept, dropped


def save_safetensors(path, tensors, metadata=None):
    """Write a safetensors file: names sorted, header padded to 8 bytes."""
    arrays = {}
    for k, v in sorted(tensors.items()):
        a = np.ascontiguousarray(v.detach().cpu().contiguous().numpy()).reshape(tuple(v.shape))
        if a.dtype not in _DTYPES:
            raise TypeError(f"{k}: unsupported dtype {a.dtype}")
        arrays[k] = a
    header, off = {}, 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for k, a in arrays.items():
        header[k] = {"dtype": _DTYPES[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for a in arrays.values():
            f.write(a.tobytes())


def convert(src, dst, quiet=False):
    kept, dropped = drop_aliases(load_state_dict(src))
    save_safetensors(dst, kept)
    if not quiet:
        print(f"wrote {dst}: {len(kept)} tensors, {len(dropped)} aliases dropped")
        for a, k in dropped.items():
            print(f"  {a} -> {k}")
    return kept, dropped


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Aliased tensors (shared heads) are written once, under their canonical name.")
    p.add_argument("checkpoint", help="official .pth checkpoint (dict with 'model', or a state_dict)")
    p.add_argument("output", help="safetensors file to write")
    p.add_argument("-q", "--quiet", action="store_true", help="do not list the dropped aliases")
    args = p.parse_args(argv)
    convert(args.checkpoint, args.output, args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
