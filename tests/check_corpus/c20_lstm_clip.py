"""A word-level LSTM language model the classic way: SGD at lr 1.0 (not a typo: the
PyTorch word_language_model example uses 20), gradients clipped to 0.25."""
# expect: none

import torch
from torch import nn


class RNNModel(nn.Module):
    def __init__(self, ntoken=100, ninp=32, nhid=64):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, 2, batch_first=True)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, tokens):
        output, _ = self.rnn(self.encoder(tokens))
        return self.decoder(output)


torch.manual_seed(0)
model = RNNModel()
optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
data = torch.randint(0, 100, (32, 21))
for step in range(40):
    model.zero_grad()
    output = model(data[:, :-1])
    loss = nn.functional.cross_entropy(output.reshape(-1, 100), data[:, 1:].reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
    optimizer.step()
