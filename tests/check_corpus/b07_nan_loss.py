"""A hand-written cross-entropy that takes log(0): the gradients hold NaN."""
# expect: nonfinite_grad

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(64, 8) * 40, torch.randint(0, 3, (64,))
for step in range(10):
    optimizer.zero_grad()
    probs = torch.softmax(model(x), dim=1)
    loss = -torch.log(probs[torch.arange(64), y]).mean()
    loss.backward()
    optimizer.step()
