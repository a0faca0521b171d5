"""Optimizers compared from one initialisation: each copy of the model loads the first
one's initial weights, then trains from scratch."""
# expect: none

import torch
from torch import nn


def net():
    return nn.Sequential(
        nn.Linear(8, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)
    )


torch.manual_seed(0)
reference = net()
x = torch.randn(256, 8)
y = torch.cos(x.sum(1, keepdim=True))
for name, make in {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-2),
}.items():
    model = net()
    model.load_state_dict(reference.state_dict())
    optimizer = make(model.parameters())
    for step in range(80):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    print(name, round(loss.item(), 4))
