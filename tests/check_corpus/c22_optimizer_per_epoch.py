"""A loop that builds a new Adam at every epoch (its moments start again each time):
wasteful, not wrong, and not fine-tuning."""
# expect: none

import torch
from torch import nn

torch.manual_seed(0)
x = torch.randn(1024, 12)
y = (x[:, :3].sum(1) > 0).long()
model = nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
for epoch in range(4):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for i in range(0, 1024, 16):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 16]), y[i : i + 16]).backward()
        optimizer.step()
