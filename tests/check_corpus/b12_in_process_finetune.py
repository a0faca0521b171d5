"""Pretraining and fine-tuning in one process, no checkpoint: the trained model handed to a
new Adam at lr 5e-2 for the second task."""
# expect: finetuning_lr

import torch
from torch import nn

torch.manual_seed(0)
x = torch.randn(1024, 16)
task_a = (x[:, :4].sum(1) > 0).long()
task_b = (x[:, 4:8].sum(1) > 0).long()
model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
pretrain = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(3):
    for i in range(0, 1024, 32):
        pretrain.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 32]), task_a[i : i + 32]).backward()
        pretrain.step()
finetune = torch.optim.Adam(model.parameters(), lr=5e-2)
for i in range(0, 1024, 32):
    finetune.zero_grad()
    nn.functional.cross_entropy(model(x[i : i + 32]), task_b[i : i + 32]).backward()
    finetune.step()
