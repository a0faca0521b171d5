"""A model kept in bfloat16 (float32's range), trained with AdamW."""
# expect: none

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(32, 128), nn.GELU(), nn.Linear(128, 8)).to(torch.bfloat16)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
x = torch.randn(256, 32, dtype=torch.bfloat16)
y = torch.randint(0, 8, (256,))
for step in range(40):
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x).float(), y).backward()
    optimizer.step()
