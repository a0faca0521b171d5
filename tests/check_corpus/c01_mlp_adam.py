"""An MLP 784-256-10 trained from scratch with Adam at its default lr 1e-3."""
# expect: none

import torch
from torch import nn

torch.manual_seed(0)
x = torch.rand(512, 784)
y = (x[:, :10].argmax(1) + x[:, 10:20].argmax(1)) % 10
model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(3):
    for i in range(0, 512, 64):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64])
        loss.backward()
        optimizer.step()
print(f"loss {loss.item():.3f}")
