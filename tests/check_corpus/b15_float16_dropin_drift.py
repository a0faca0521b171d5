"""A model cast to float16 and trained with descentlab's AdamW: its arithmetic is float32
(no NaN), but the float16 mean of squared gradients (kept in float16, as torch keeps it)
underflows to 0 for ordinary small gradients, so steps become m/eps and the weights drift
silently."""
# expect: second_moment_underflow

import torch
from torch import nn

import descentlab.torch as optim

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)).half()
optimizer = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
x = torch.randn(128, 64, dtype=torch.float16)
y = torch.zeros(128, 1, dtype=torch.float16)
for step in range(100):
    optimizer.zero_grad()
    loss = (model(x).float() - y.float()).pow(2).mean() * 1e-4
    loss.backward()
    optimizer.step()
print("max |w|", max(p.abs().max().item() for p in model.parameters()))
