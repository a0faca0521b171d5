"""Sine-wave prediction with two stacked LSTM cells, fitted by L-BFGS with a closure.

Written the way pytorch/examples' time-sequence-prediction trains its model, on fewer and
shorter waves. Run it as a script.
"""

import torch
import torch.nn as nn
import torch.optim as optim


class Sequence(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm1 = nn.LSTMCell(1, 51)
        self.lstm2 = nn.LSTMCell(51, 51)
        self.linear = nn.Linear(51, 1)

    def forward(self, input, future=0):
        outputs = []
        h_t = torch.zeros(input.size(0), 51, dtype=torch.double)
        c_t = torch.zeros(input.size(0), 51, dtype=torch.double)
        h_t2 = torch.zeros(input.size(0), 51, dtype=torch.double)
        c_t2 = torch.zeros(input.size(0), 51, dtype=torch.double)

        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for _ in range(future):  # keep predicting from the last output
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        return torch.cat(outputs, dim=1)


def sine_waves(n, length, period, generator):
    """``n`` sine waves of ``length`` samples, each shifted by a random phase."""
    shift = torch.randint(-4 * period, 4 * period, (n, 1), generator=generator)
    x = torch.arange(length) + shift
    return torch.sin(x / 1.0 / period).double()


if __name__ == "__main__":
    torch.manual_seed(0)
    data = sine_waves(8, 30, 20, torch.Generator().manual_seed(2))
    input = data[3:, :-1]
    target = data[3:, 1:]
    test_input = data[:3, :-1]
    test_target = data[:3, 1:]

    seq = Sequence()
    seq.double()
    criterion = nn.MSELoss()
    optimizer = optim.LBFGS(seq.parameters(), lr=0.8)
    for i in range(2):
        print("STEP: ", i)

        def closure():
            optimizer.zero_grad()
            out = seq(input)
            loss = criterion(out, target)
            print("loss:", loss.item())
            loss.backward()
            return loss

        loss = optimizer.step(closure)
        future = 10
        with torch.no_grad():
            pred = seq(test_input, future=future)
            test_loss = criterion(pred[:, :-future], test_target)
            print("test loss:", test_loss.item())
