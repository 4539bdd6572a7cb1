"""Writes tests/data/optim_steps.safetensors: torch.optim.AdamW and torch.optim.SGD applied to
fixed gradients (no model), so the C++ optimizers can be compared bit for bit.

For each case <c> in adamw, sgd_momentum, sgd_nesterov, sgd_dampening: two parameters a [1003]
and b [37] in two groups (different lr and weight decay), initial values "<c>.a.init" /
"<c>.b.init", the gradient of step s (1..5) "grad<s>.a" / "grad<s>.b" (shared by all cases; b
has no gradient at step 2, so it is skipped there), and the values after step s
"<c>.a.step<s>" / "<c>.b.step<s>".
"""
import torch

from common import save

torch.manual_seed(0)
a0 = torch.randn(1003)
b0 = torch.randn(37)
grads = []
for s in range(1, 6):
    ga = torch.randn(1003) * (10.0 ** -s)
    ga[::7] = 0.0
    gb = None if s == 2 else torch.randn(37)
    grads.append((ga, gb))

cases = {
    "adamw": lambda groups: torch.optim.AdamW(groups, lr=1e-3, weight_decay=1e-2),
    "sgd_momentum": lambda groups: torch.optim.SGD(groups, lr=1e-2, momentum=0.9, weight_decay=1e-2),
    "sgd_nesterov": lambda groups: torch.optim.SGD(groups, lr=1e-2, momentum=0.9, nesterov=True,
                                                   weight_decay=1e-2),
    "sgd_dampening": lambda groups: torch.optim.SGD(groups, lr=1e-2, momentum=0.5, dampening=0.3),
}
out = {"a.init": a0, "b.init": b0}
for s, (ga, gb) in enumerate(grads, 1):
    out[f"grad{s}.a"] = ga
    if gb is not None:
        out[f"grad{s}.b"] = gb
for name, make in cases.items():
    a = a0.clone().requires_grad_()
    b = b0.clone().requires_grad_()
    opt = make([{"params": [a]}, {"params": [b], "lr": 3e-3, "weight_decay": 0.0}])
    for s, (ga, gb) in enumerate(grads, 1):
        a.grad = ga.clone()
        b.grad = None if gb is None else gb.clone()
        opt.step()
        out[f"{name}.a.step{s}"] = a.detach().clone()
        out[f"{name}.b.step{s}"] = b.detach().clone()
print(torch.__config__.show().split("CPU capability usage:")[1].split("\n")[0].strip())
save("optim_steps", out)
