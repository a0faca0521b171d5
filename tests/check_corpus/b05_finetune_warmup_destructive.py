"""A destructive fine-tuning lr behind a warmup: the pretrained digits MLP fine-tuned on a
new labelling with Adam warmed up over 30 steps to 1e-2; the first steps are small, the
weights then move by more than their own norm and the old task is forgotten."""
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
x, y = torch.tensor(x, dtype=torch.float32) / 16, torch.tensor(y)
before = (model(x[1500:]).argmax(1) == y[1500:]).float().mean().item()
new_y = (y * 3) % 10
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 30))
for epoch in range(7):
    for i in range(0, 1500, 50):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 50]), new_y[i : i + 50]).backward()
        optimizer.step()
        scheduler.step()
after = (model(x[1500:]).argmax(1) == y[1500:]).float().mean().item()
print(f"old task accuracy {before:.3f} -> {after:.3f}")
