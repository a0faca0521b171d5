"""The pretrained digits MLP fine-tuned with SGD+momentum at lr 0.5 (a from-scratch lr):
the learned weights are overwritten within the first epoch."""
# expect: finetuning_lr

import torch
from sklearn.datasets import load_digits
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(
    nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
)
model.load_state_dict(torch.load("pretrained_mlp.pt"))
x, y = load_digits(return_X_y=True)
x, y = torch.tensor(x, dtype=torch.float32) / 16, (torch.tensor(y) + 5) % 10
optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
for epoch in range(3):
    for i in range(0, 1500, 50):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 50]), y[i : i + 50]).backward()
        optimizer.step()
