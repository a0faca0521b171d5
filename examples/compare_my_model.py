"""Compare optimizers on your own model: a small classifier on a DataLoader.

Run: python examples/compare_my_model.py   (prints where the report was written)
"""

import tempfile

import torch

from descentlab.lab import compare

torch.manual_seed(0)
x = torch.randn(512, 20)
y = (x[:, :5].sum(1) > 0).long()  # a label the first five features decide
train = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(x[:384], y[:384]), batch_size=32, shuffle=True
)
net = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))

result = compare(
    model=net,
    data=train,
    test_data=(x[384:], y[384:]),
    loss_fn=torch.nn.functional.cross_entropy,
    optimizers=["sgd:momentum=0.9", "adam", "adamw"],
    lrs=[1e-3, 1e-2, 1e-1],
    seeds=2,
    epochs=5,
    out=tempfile.mkdtemp(prefix="my-model-"),
    name="my-classifier",
)
for row in result.summary:
    print(
        f"{row['optimizer']:>18} lr={row['lr']:<6g} final loss {row['final_loss'][0]:.4f} "
        f"test acc {row.get('final_acc', [float('nan')])[0]:.3f}"
    )
print("report:", result.files["html"])
