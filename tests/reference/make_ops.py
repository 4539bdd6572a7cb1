"""Writes tests/data/ops_reference.safetensors: reductions, indexing and layout ops in torch,
with the gradient of each input for a fixed upstream gradient (test_ops_parity.cpp)."""
import torch

from common import save

torch.manual_seed(0)
out = {}


def case(name, fn, *inputs):
    """Runs fn on leaf copies of inputs; stores inputs, output and input grads for a random dy."""
    leaves = [t.clone().requires_grad_(t.is_floating_point()) for t in inputs]
    y = fn(*leaves)
    dy = torch.randn(y.shape)
    y.backward(dy)
    out[f"{name}.y"] = y.detach()
    out[f"{name}.dy"] = dy
    for i, (t, leaf) in enumerate(zip(inputs, leaves)):
        out[f"{name}.x{i}"] = t
        if leaf.requires_grad:
            out[f"{name}.dx{i}"] = leaf.grad


x = torch.randn(3, 7, 5)
case("sum_dims", lambda a: a.sum(dim=(0, 2)), x)
case("sum_keep", lambda a: a.sum(dim=-2, keepdim=True), x)
case("sum_all", lambda a: a.sum(), x)
case("mean_dims", lambda a: a.mean(dim=(1, 2)), x)
case("mean_keep", lambda a: a.mean(dim=(0, -1), keepdim=True), x)
case("mean_all", lambda a: a.mean(), x)

# Ties: small integers, many equal values per row; large and small, along last and middle dims.
ties = torch.randint(0, 4, (4, 60)).float()
for name, kw in [("topk_largest", dict(k=7, dim=-1, largest=True)),
                 ("topk_smallest", dict(k=7, dim=-1, largest=False)),
                 ("topk_half", dict(k=30, dim=1, largest=True))]:
    v, i = torch.topk(ties, **kw)
    out[f"{name}.indices"] = i
    case(name, lambda a, kw=kw: torch.topk(a, **kw).values, ties)
ties3 = torch.randint(0, 3, (2, 9, 3)).float()
v, i = torch.topk(ties3, 4, dim=1)
out["topk_mid.indices"] = i
case("topk_mid", lambda a: torch.topk(a, 4, dim=1).values, ties3)

# nan counts as the largest value; several nans per row tie among themselves.
nans = torch.randint(0, 4, (3, 80)).float()
nans[nans == 3] = float("nan")
out["nans"] = nans
for name, kw in [("topk_nan_largest", dict(k=10, largest=True)),
                 ("topk_nan_smallest", dict(k=70, largest=False))]:
    out[f"{name}.indices"] = torch.topk(nans, **kw).indices
    out[f"{name}.values"] = torch.topk(nans, **kw).values

# max along a dim: the first of equal maxima.
for name, dim in [("max_last", -1), ("max_first", 0)]:
    out[f"{name}.indices"] = ties3.max(dim).indices
    case(name, lambda a, dim=dim: a.max(dim).values, ties3)

gidx = torch.randint(0, 7, (3, 9, 4))
out["gather.index"] = gidx
case("gather", lambda a: torch.gather(a, 1, gidx), x)
sidx = torch.tensor([6, 0, 6, 6, 2, 0])
out["index_select.index"] = sidx
case("index_select", lambda a: torch.index_select(a, 1, sidx), x)
emb_idx = torch.tensor([[4, 0, 4], [1, 4, 2]])
out["embedding.index"] = emb_idx
case("embedding", lambda w: torch.nn.functional.embedding(emb_idx, w), torch.randn(5, 6))
mask = torch.rand(7, 1) > 0.5
out["masked_fill.mask"] = mask
case("masked_fill", lambda a: a.masked_fill(mask, -2.5), x)

y = torch.randn(3, 2, 5)
case("concat", lambda a, b: torch.cat([a, b, a], dim=1), x, y)
case("split", lambda a: torch.split(a, [2, 4, 1], dim=1)[1], x)
case("slice", lambda a: a[:, 1:6:2, -3:], x)
case("repeat", lambda a: a.repeat(2, 1, 3, 1), y)
case("expand", lambda a: a[:, :1].expand(4, 3, 6, 5), x)

save("ops_reference", out)
