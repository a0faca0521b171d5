"""An lr range test (the lr grows 10x every 10 steps until the loss blows up), then the
initial weights restored and the model trained from scratch at the lr it suggested."""
# expect: none

import copy

import torch
from torch import nn

torch.manual_seed(0)
x = torch.randn(512, 20)
y = (x[:, 0] > x[:, 1]).long()
model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 2))
initial = copy.deepcopy(model.state_dict())
finder = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)
losses = {}
for step in range(50):
    lr = 1e-5 * 10 ** (step / 10)
    finder.param_groups[0]["lr"] = lr
    finder.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    finder.step()
    losses[lr] = loss.item()
best = min(losses, key=losses.get) / 10
model.load_state_dict(initial)
optimizer = torch.optim.SGD(model.parameters(), lr=best, momentum=0.9)
for step in range(100):
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
