"""zero_grad() forgotten: every step applies the sum of all gradients so far."""
# expect: grad_accumulation

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
x, y = torch.randn(256, 10), torch.randn(256, 1)
for epoch in range(2):
    for i in range(0, 256, 32):
        loss = nn.functional.mse_loss(model(x[i : i + 32]), y[i : i + 32])
        loss.backward()
        optimizer.step()
