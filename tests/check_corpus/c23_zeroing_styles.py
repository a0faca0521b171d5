"""Every way of clearing gradients, each at its place: zero_grad(set_to_none=False) before
the backward, model.zero_grad() after the step, and .grad = None."""
# expect: none

import torch
from torch import nn

torch.manual_seed(0)
x, y = torch.randn(128, 6), torch.randn(128, 1)
for style in ("keep", "model", "none"):
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(30):
        if style == "keep":
            optimizer.zero_grad(set_to_none=False)
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        if style == "model":
            model.zero_grad()
        elif style == "none":
            for p in model.parameters():
                p.grad = None
