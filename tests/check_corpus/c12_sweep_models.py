"""A sweep: 20 models, each trained from scratch with AdamW at its own lr and seed."""
# expect: none

import torch
from torch import nn

x = torch.randn(256, 16)
y = torch.sin(x[:, :2].sum(1, keepdim=True))
results = {}
for run in range(20):
    torch.manual_seed(run)
    lr = 10 ** (-4 + 2 * run / 19)
    model = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for step in range(30):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    results[lr] = loss.item()
print(min(results, key=results.get))
