"""Two losses, two backward passes into one step (retain_graph on the shared trunk), and an
auxiliary head that some batches do not reach."""
# expect: none

import torch
from torch import nn

torch.manual_seed(0)
trunk = nn.Sequential(nn.Linear(10, 64), nn.ReLU())
main_head, aux_head = nn.Linear(64, 3), nn.Linear(64, 1)
params = [*trunk.parameters(), *main_head.parameters(), *aux_head.parameters()]
optimizer = torch.optim.RMSprop(params, lr=1e-3)
x, y, z = torch.randn(256, 10), torch.randint(0, 3, (256,)), torch.randn(256, 1)
for step in range(40):
    optimizer.zero_grad()
    features = trunk(x)
    nn.functional.cross_entropy(main_head(features), y).backward(retain_graph=True)
    if step % 2 == 0:
        (0.1 * nn.functional.mse_loss(aux_head(features), z)).backward()
    optimizer.step()
