"""Gradient accumulation: 4 micro-batches per step, the loss divided by 4, zeroed after
each step."""
# expect: none

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
accumulation_steps = 4
x, y = torch.randn(512, 20), torch.randint(0, 2, (512,))
optimizer.zero_grad()
for i, start in enumerate(range(0, 512, 16)):
    loss = nn.functional.cross_entropy(model(x[start : start + 16]), y[start : start + 16])
    (loss / accumulation_steps).backward()
    if (i + 1) % accumulation_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
