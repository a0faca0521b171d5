"""A small pretrained model (under 20,000 weights) fine-tuned at lr 1e-2 with Adam."""
# expect: finetuning_lr

import torch
from sklearn.datasets import load_digits
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(
    nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
)
model.load_state_dict(torch.load("pretrained_mlp.pt"))
small = nn.Sequential(model[0], nn.ReLU(), nn.Linear(128, 10))  # the first layer, a new head
x, y = load_digits(return_X_y=True)
x, y = torch.tensor(x, dtype=torch.float32) / 16, torch.tensor(y)
optimizer = torch.optim.Adam(small.parameters(), lr=1e-2)
for i in range(0, 1500, 50):
    optimizer.zero_grad()
    nn.functional.cross_entropy(small(x[i : i + 50]), y[i : i + 50]).backward()
    optimizer.step()
