"""A model cast to float16 and trained with torch's AdamW: eps 1e-8 rounds to 0, the
squared gradients underflow to 0, and the first step divides 0 by 0 (NaN)."""
# expect: eps_underflow, second_moment_underflow, nonfinite_grad

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)).half()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
x = torch.randn(128, 64, dtype=torch.float16)
y = torch.zeros(128, 1, dtype=torch.float16)
for step in range(20):
    optimizer.zero_grad()
    loss = (model(x).float() - y.float()).pow(2).mean() * 1e-4
    loss.backward()
    optimizer.step()
print("max |w|", max(p.abs().max().item() for p in model.parameters()))
