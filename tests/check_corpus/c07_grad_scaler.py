"""Mixed precision: autocast and GradScaler, gradients unscaled and clipped before the
step (PyTorch's AMP recipe, on the CPU)."""
# expect: none

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 4))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
scaler = torch.amp.GradScaler("cpu")
x, y = torch.randn(256, 32), torch.randint(0, 4, (256,))
for epoch in range(3):
    for i in range(0, 256, 32):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x[i : i + 32]), y[i : i + 32])
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
