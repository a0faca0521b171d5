"""Fine-tuning the pretrained MLP on a new labelling of the digits with Adam at 1e-4
(a fine-tuning lr), every layer trained."""
# expect: none

import torch
from sklearn.datasets import load_digits
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(
    nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
)
model.load_state_dict(torch.load("pretrained_mlp.pt"))
x, y = load_digits(return_X_y=True)
x, y = torch.tensor(x, dtype=torch.float32) / 16, (torch.tensor(y) * 3) % 10
optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
for epoch in range(7):
    for i in range(0, 1500, 50):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 50]), y[i : i + 50]).backward()
        optimizer.step()
print("accuracy", (model(x[1500:]).argmax(1) == y[1500:]).float().mean().item())
