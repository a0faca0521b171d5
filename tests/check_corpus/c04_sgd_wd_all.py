"""ResNet-style recipe: SGD, momentum 0.9, weight_decay 5e-4 on all parameters, StepLR."""
# expect: none
# advice: decay_on_bias_or_norm

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
    nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
)  # fmt: skip
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.1)
images, labels = torch.randn(128, 3, 16, 16), torch.randint(0, 10, (128,))
for epoch in range(3):
    for i in range(0, 128, 16):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images[i : i + 16]), labels[i : i + 16]).backward()
        optimizer.step()
    scheduler.step()
