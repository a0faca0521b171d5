"""descentlab's drop-ins in a plain loop: AdamW with two decay groups and OneCycleLR,
then SGD with Nesterov momentum on a second model."""
# expect: none

import torch
from torch import nn

import descentlab
import descentlab.torch as optim

torch.manual_seed(0)
x = torch.randn(256, 16)
y = (x[:, :4].sum(1) > 0).long()
model = nn.Sequential(nn.Linear(16, 64), nn.LayerNorm(64), nn.ReLU(), nn.Linear(64, 2))
optimizer = optim.AdamW(descentlab.param_groups_for_decay(model, 0.05), lr=3e-3)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=60)
for step in range(60):
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    scheduler.step()
second = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
sgd = optim.SGD(second.parameters(), lr=0.05, momentum=0.9, nesterov=True)
for step in range(60):
    sgd.zero_grad()
    nn.functional.cross_entropy(second(x), y).backward()
    sgd.step()
