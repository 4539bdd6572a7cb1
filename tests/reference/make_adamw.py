"""Writes tests/data/adamw_reference.safetensors: 10 training steps of a small MLP with
torch.optim.AdamW (two parameter groups with different lrs, weight_decay 1e-4) and
clip_grad_norm_(max_norm=0.1) before each step, on an MSE loss.

Stored: the inputs x [16, 4] and targets y [16, 3], the initial weights under "init.<name>",
the weights after step s (1..10) under "step<s>.<name>", and per step the loss before the
update ("loss" [10]) and the gradient norm clip_grad_norm_ returned ("grad_norm" [10]).
Names follow nn.Sequential: 0.weight, 0.bias (Linear(4, 8)), 2.weight, 2.bias (Linear(8, 3)).
"""
import torch

from common import save

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
x = torch.randn(16, 4)
y = torch.randn(16, 3)
opt = torch.optim.AdamW([{"params": model[0].parameters(), "lr": 1e-3},
                         {"params": model[2].parameters(), "lr": 3e-3}],
                        lr=1e-3, weight_decay=1e-4)

out = {"x": x, "y": y}
out.update({"init." + k: v.clone() for k, v in model.state_dict().items()})
losses, norms = [], []
for step in range(1, 11):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.1))
    opt.step()
    losses.append(loss.detach())
    out.update({f"step{step}.{k}": v.clone() for k, v in model.state_dict().items()})
out["loss"] = torch.stack(losses)
out["grad_norm"] = torch.stack(norms)
print("losses", out["loss"].tolist())
print("grad norms", out["grad_norm"].tolist())
save("adamw_reference", out)
