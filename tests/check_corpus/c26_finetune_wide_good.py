"""Fine-tuning wide pretrained layers (transformer scale, std 0.02) with AdamW at 2e-5."""
# expect: none

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 256))
model.load_state_dict(torch.load("pretrained_wide.pt"))
head = nn.Linear(256, 4)
optimizer = torch.optim.AdamW(
    [{"params": model.parameters(), "lr": 2e-5}, {"params": head.parameters(), "lr": 1e-3}],
    weight_decay=0.0,
)
x, y = torch.randn(512, 256), torch.randint(0, 4, (512,))
for epoch in range(3):
    for i in range(0, 512, 32):
        optimizer.zero_grad()
        nn.functional.cross_entropy(head(model(x[i : i + 32])), y[i : i + 32]).backward()
        optimizer.step()
