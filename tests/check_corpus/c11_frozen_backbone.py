"""Transfer learning: the pretrained MLP's layers frozen, a new head trained with Adam 1e-3
(the only tensors that move are freshly initialised)."""
# expect: none

import torch
from sklearn.datasets import load_digits
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(
    nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
)
model.load_state_dict(torch.load("pretrained_mlp.pt"))
for p in model.parameters():
    p.requires_grad = False
model[4] = nn.Linear(128, 2)  # the new task: even or odd
x, y = load_digits(return_X_y=True)
x, y = torch.tensor(x, dtype=torch.float32) / 16, torch.tensor(y) % 2
optimizer = torch.optim.Adam(filter(lambda p: p.requires_grad, model.parameters()), lr=1e-3)
for epoch in range(3):
    for i in range(0, 1500, 50):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 50]), y[i : i + 50]).backward()
        optimizer.step()
print("accuracy", (model(x[1500:]).argmax(1) == y[1500:]).float().mean().item())
