"""Wide pretrained layers (transformer scale) fine-tuned with Adam's default lr 1e-3:
each step moves the weights by ~5% of their norm."""
# expect: finetuning_lr

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 256))
model.load_state_dict(torch.load("pretrained_wide.pt"))
head = nn.Linear(256, 4)
optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()])
x, y = torch.randn(512, 256), torch.randint(0, 4, (512,))
for i in range(0, 512, 32):
    optimizer.zero_grad()
    nn.functional.cross_entropy(head(model(x[i : i + 32])), y[i : i + 32]).backward()
    optimizer.step()
