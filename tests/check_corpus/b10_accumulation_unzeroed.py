"""Gradient accumulation with zero_grad() only once per epoch: after the first step the
gradients of earlier steps are applied again."""
# expect: grad_accumulation

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
x, y = torch.randn(512, 20), torch.randint(0, 2, (512,))
for epoch in range(2):
    optimizer.zero_grad()
    for i, start in enumerate(range(0, 512, 16)):
        loss = nn.functional.cross_entropy(model(x[start : start + 16]), y[start : start + 16])
        (loss / 4).backward()
        if (i + 1) % 4 == 0:
            optimizer.step()
