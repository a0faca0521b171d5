"""A recommender: sparse embedding gradients stepped by SparseAdam, the dense layers by
Adam (two optimizers over disjoint parameters)."""
# expect: none

import torch
from torch import nn

torch.manual_seed(0)
users, items = nn.Embedding(500, 16, sparse=True), nn.Embedding(300, 16, sparse=True)
head = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
sparse = torch.optim.SparseAdam([*users.parameters(), *items.parameters()], lr=1e-2)
dense = torch.optim.Adam(head.parameters(), lr=1e-3)
u, i = torch.randint(0, 500, (2048,)), torch.randint(0, 300, (2048,))
rating = torch.rand(2048, 1) * 5
for start in range(0, 2048, 128):
    sparse.zero_grad()
    dense.zero_grad()
    features = torch.cat([users(u[start : start + 128]), items(i[start : start + 128])], 1)
    nn.functional.mse_loss(head(features), rating[start : start + 128]).backward()
    sparse.step()
    dense.step()
