"""A small transformer encoder trained from scratch: AdamW with decoupled decay on the
weight matrices only, 20 warmup steps then cosine decay, gradient clipping."""
# expect: none

import math

import torch
from torch import nn

import descentlab

torch.manual_seed(0)
layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
model = nn.Sequential(nn.Embedding(50, 32), nn.TransformerEncoder(layer, 2), nn.Linear(32, 50))
groups = descentlab.param_groups_for_decay(model, 0.1)
optimizer = torch.optim.AdamW(groups, lr=3e-3, betas=(0.9, 0.95))
total, warmup = 120, 20


def schedule(step):
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
tokens = torch.randint(0, 50, (64, 12))
for step in range(total):
    optimizer.zero_grad(set_to_none=True)
    logits = model(tokens[:, :-1])
    loss = nn.functional.cross_entropy(logits.reshape(-1, 50), tokens[:, 1:].reshape(-1))
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
