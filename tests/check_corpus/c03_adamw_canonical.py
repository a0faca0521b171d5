"""The most common torch loop: AdamW(model.parameters()) at its defaults (decay 0.01 on
every parameter, biases and LayerNorm included: advice, not a pitfall)."""
# expect: none
# advice: decay_on_bias_or_norm

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(32, 64), nn.LayerNorm(64), nn.GELU(), nn.Linear(64, 1))
optimizer = torch.optim.AdamW(model.parameters())
x = torch.randn(256, 32)
y = x[:, :4].sum(1, keepdim=True)
for step in range(60):
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
print(f"loss {loss.item():.4f}")
