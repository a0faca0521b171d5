"""model.zero_grad() placed after clipping, just before the step (set_to_none=False via
the module): the gradients are zeros when the step reads them."""
# expect: zeroed_before_step

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
x, y = torch.randn(256, 10), torch.randn(256, 1)
for i in range(0, 256, 32):
    loss = nn.functional.mse_loss(model(x[i : i + 32]), y[i : i + 32])
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.zero_grad(set_to_none=False)
    optimizer.step()
