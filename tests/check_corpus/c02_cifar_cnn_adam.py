"""A CIFAR-style CNN (the PyTorch tutorial's, on random 3x32x32 images) with Adam 1e-3."""
# expect: none

import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


torch.manual_seed(0)
net = Net()
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
images, labels = torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,))
for epoch in range(2):
    for i in range(0, 256, 32):
        optimizer.zero_grad()
        loss = criterion(net(images[i : i + 32]), labels[i : i + 32])
        loss.backward()
        optimizer.step()
print("Finished Training")
