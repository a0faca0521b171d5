"""Fine-tuning the pretrained MLP with AdamW, a 30-step linear warmup to 1e-4 and linear
decay over 210 steps: the usual fine-tuning schedule at a sound peak."""
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
x, y = torch.tensor(x, dtype=torch.float32) / 16, (torch.tensor(y) + 1) % 10
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
total, warmup = 210, 30
scheduler = torch.optim.lr_scheduler.LambdaLR(
    optimizer, lambda s: (s + 1) / warmup if s < warmup else (total - s) / (total - warmup)
)
step = 0
while step < total:
    for i in range(0, 1500, 50):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 50]), y[i : i + 50]).backward()
        optimizer.step()
        scheduler.step()
        step += 1
        if step == total:
            break
