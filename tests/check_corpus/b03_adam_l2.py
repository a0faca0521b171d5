"""Adam with weight_decay: L2 added to the gradient, divided by Adam's denominator."""
# expect: coupled_weight_decay
# advice: decay_on_bias_or_norm

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-2)
x, y = torch.randn(256, 20), torch.randint(0, 5, (256,))
for step in range(30):
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
