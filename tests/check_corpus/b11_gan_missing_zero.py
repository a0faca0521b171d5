"""A GAN whose discriminator is never zeroed: its gradients pile up across iterations
(including the generator's passes through it)."""
# expect: grad_accumulation

import torch
from torch import nn

torch.manual_seed(0)
netG = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2))
netD = nn.Sequential(nn.Linear(2, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))
criterion = nn.BCEWithLogitsLoss()
optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
for i in range(50):
    real = torch.randn(64, 2) + 2
    fake = netG(torch.randn(64, 8))
    errD = criterion(netD(real), torch.ones(64, 1)) + criterion(
        netD(fake.detach()), torch.zeros(64, 1)
    )
    errD.backward()
    optimizerD.step()
    netG.zero_grad()
    criterion(netD(fake), torch.ones(64, 1)).backward()
    optimizerG.step()
