"""A small GAN trained the DCGAN way: two Adams (lr 2e-4, betas 0.5/0.999), the
discriminator on real and detached fake samples, then the generator."""
# expect: none

import torch
from torch import nn

torch.manual_seed(0)
netG = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2))
netD = nn.Sequential(nn.Linear(2, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))
criterion = nn.BCEWithLogitsLoss()
optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
for i in range(100):
    real = torch.randn(64, 2) * 0.5 + torch.tensor([2.0, -1.0])
    netD.zero_grad()
    errD_real = criterion(netD(real), torch.ones(64, 1))
    errD_real.backward()
    fake = netG(torch.randn(64, 8))
    errD_fake = criterion(netD(fake.detach()), torch.zeros(64, 1))
    errD_fake.backward()
    optimizerD.step()
    netG.zero_grad()
    errG = criterion(netD(fake), torch.ones(64, 1))
    errG.backward()
    optimizerG.step()
