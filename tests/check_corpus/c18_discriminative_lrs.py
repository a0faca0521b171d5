"""Fine-tuning with a new head: the pretrained body loaded (strict=False, the old head
left out) at lr 2e-5, the fresh head in its own group at 1e-3."""
# expect: none

import torch
from sklearn.datasets import load_digits
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(
    nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 5)
)
state = torch.load("pretrained_mlp.pt")
body = {k: v for k, v in state.items() if not k.startswith("4.")}
model.load_state_dict(body, strict=False)
optimizer = torch.optim.AdamW(
    [
        {"params": model[:4].parameters(), "lr": 2e-5},
        {"params": model[4].parameters(), "lr": 1e-3},
    ],
    weight_decay=0.0,
)
x, y = load_digits(return_X_y=True)
x, y = torch.tensor(x, dtype=torch.float32) / 16, torch.tensor(y) // 2
for epoch in range(5):
    for i in range(0, 1500, 50):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 50]), y[i : i + 50]).backward()
        optimizer.step()
