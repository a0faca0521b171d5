"""Training resumed from a checkpoint: model and optimizer state saved mid-run, loaded into
new objects, and the run goes on at the same lr (not fine-tuning)."""
# expect: none

import io

import torch
from torch import nn


def make():
    model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 1))
    return model, torch.optim.Adam(model.parameters(), lr=1e-2)


def train(model, optimizer, steps, x, y):
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


torch.manual_seed(0)
x = torch.randn(256, 10)
y = x[:, :3].prod(1, keepdim=True)
model, optimizer = make()
train(model, optimizer, 100, x, y)
checkpoint = io.BytesIO()
torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, checkpoint)
checkpoint.seek(0)
state = torch.load(checkpoint)
model, optimizer = make()
model.load_state_dict(state["model"])
optimizer.load_state_dict(state["optimizer"])
train(model, optimizer, 100, x, y)
