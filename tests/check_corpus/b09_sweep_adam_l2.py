"""A sweep of 20 models, each with Adam and weight_decay (L2): one problem, found on all 20
optimizers, is one finding naming them."""
# expect: coupled_weight_decay
# advice: decay_on_bias_or_norm

import torch
from torch import nn

x, y = torch.randn(128, 8), torch.randn(128, 1)
for run in range(20):
    torch.manual_seed(run)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4 * (run + 1))
    for step in range(10):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
