"""Makes the checkpoints the corpus's fine-tuning scripts load, as another process would:
run once, outside ``descentlab check``, before the corpus (tests/test_check_corpus.py).

* ``pretrained_mlp.pt``: an MLP 64-128-128-10 trained on scikit-learn's digits (the
  images scaled to [0, 1]) to about 97% held-out accuracy;
* ``pretrained_wide.pt``: two 256x256 layers at the scale of pretrained transformer
  weights (std 0.02).
"""

import torch
from sklearn.datasets import load_digits
from torch import nn


def mlp():
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )


def main():
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32) / 16
    y = torch.tensor(y)
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(30):
        for i in range(0, 1500, 50):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i : i + 50]), y[i : i + 50]).backward()
            opt.step()
    accuracy = (model(x[1500:]).argmax(1) == y[1500:]).float().mean().item()
    print(f"pretrained MLP: held-out accuracy {accuracy:.3f}")
    torch.save(model.state_dict(), "pretrained_mlp.pt")
    wide = nn.Sequential(nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 256))
    with torch.no_grad():
        for p in wide.parameters():
            p.normal_(0, 0.02)
    torch.save(wide.state_dict(), "pretrained_wide.pt")


if __name__ == "__main__":
    main()
