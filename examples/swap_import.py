"""Swap ``torch.optim`` for ``descentlab.torch``: the training loop does not change.

Run: python examples/swap_import.py
"""

import torch

import descentlab
import descentlab.torch as optim  # was: import torch.optim as optim

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
x, y = torch.randn(256, 10), torch.randn(256, 1)
# no weight decay on biases (and norm layers): the usual two param groups
opt = optim.AdamW(descentlab.param_groups_for_decay(model, 0.01), lr=3e-3)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=200)
for step in range(200):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    sched.step()
    if step % 50 == 0:
        print(f"step {step}: loss={loss.item():.4f} lr={sched.get_last_lr()[0]:.2e}")
torch.save(opt.state_dict(), "/dev/null")  # state_dict keys are torch.optim's
