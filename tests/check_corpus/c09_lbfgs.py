"""Full-batch L-BFGS with a closure (PyTorch's time-sequence example style)."""
# expect: none

import torch
from torch import nn

torch.manual_seed(0)
t = torch.linspace(0, 6.28, 200).unsqueeze(1)
target = torch.sin(3 * t)
model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
optimizer = torch.optim.LBFGS(model.parameters(), lr=0.8, max_iter=10)


def closure():
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(t), target)
    loss.backward()
    return loss


for i in range(10):
    loss = optimizer.step(closure)
print(f"loss {loss.item():.4f}")
