"""zero_grad() between backward() and step(): the step sees no gradient, nothing trains."""
# expect: zeroed_before_step

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.randn(256, 10), torch.randn(256, 1)
for i in range(0, 256, 32):
    loss = nn.functional.mse_loss(model(x[i : i + 32]), y[i : i + 32])
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
print(f"loss {loss.item():.3f} (never decreases)")
