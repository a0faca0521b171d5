"""The seed's two code examples, run as written, against what the seed says they do."""

from __future__ import annotations

import contextlib
import io
import math
import re

import numpy as np

from .base import Claim, Context, EffectSpec, Measurement, Statement, support

# The seed's examples, verbatim; only the indentation that the document's text lost is
# restored (the bodies of the for-loops and of the function).
PYTORCH_EXAMPLE = """
import torch
import torch.nn as nn
model = nn.Linear(10, 1)
X = torch.randn(100, 10)
y = torch.randn(100, 1)
loss_fn = nn.MSELoss()
# --- SGD ---
opt_sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
# --- Adam ---
opt_adam = torch.optim.Adam(model.parameters(), lr=1e-3)
# --- AdamW (preferred for transformers) ---
opt_adamw = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
# Training loop (same for all)
for epoch in range(50):
    opt_adam.zero_grad() # clear accumulated gradients
    pred = model(X)
    loss = loss_fn(pred, y)
    loss.backward() # compute ∇L for all parameters
    opt_adam.step() # apply the Adam update rule
    if epoch % 10 == 0:
        print(f"epoch {epoch}: loss={loss.item():.4f}")
"""

NUMPY_EXAMPLE = '''
# Implementing Adam from scratch to understand it
import numpy as np
def adam_update(w, grad, m, v, t, alpha=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """
    w - current weights
    grad - gradient at current w
    m, v - running 1st and 2nd moment estimates
    t - time step (starts at 1)
    """
    m = beta1 * m + (1 - beta1) * grad # update biased 1st moment
    v = beta2 * v + (1 - beta2) * (grad ** 2) # update biased 2nd moment
    m_hat = m / (1 - beta1 ** t) # bias correction
    v_hat = v / (1 - beta2 ** t)
    w = w - alpha * m_hat / (np.sqrt(v_hat) + eps)
    return w, m, v
# Usage
w = np.array([0.0, 0.0, 0.0])
m = np.zeros_like(w)
v = np.zeros_like(w)
for t in range(1, 101):
    grad = 2 * w - np.array([1.0, 2.0, 3.0]) # gradient of ||w - target||²
    w, m, v = adam_update(w, grad, m, v, t)
print(f"converged to: {w}") # should be close to [1, 2, 3]
'''


def _run(code: str, seed: int = 0) -> tuple[str, dict]:
    import torch

    torch.manual_seed(seed)
    out = io.StringIO()
    scope: dict = {"__name__": "seed_example"}
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<seed example>", "exec"), scope)
    return out.getvalue(), scope


def measure(ctx: Context) -> Measurement:
    printed_torch, _ = _run(PYTORCH_EXAMPLE)
    losses = [float(x) for x in re.findall(r"loss=([0-9.]+)", printed_torch)]
    printed_numpy, scope = _run(NUMPY_EXAMPLE)
    w = np.asarray(scope["w"])
    adam_update = scope["adam_update"]
    # what the loop does with 100x the steps: where the seed's gradient really leads
    w_long, m, v = np.zeros(3), np.zeros(3), np.zeros(3)
    for t in range(1, 20001):
        w_long, m, v = adam_update(w_long, 2 * w_long - np.array([1.0, 2.0, 3.0]), m, v, t)
    fig = {
        "PyTorch example: printed lines": len(losses),
        "PyTorch example: loss at epoch 0": losses[0],
        "PyTorch example: loss at epoch 40": losses[-1],
        "NumPy example: max |w - [1, 2, 3]| after 100 steps": float(np.max(abs(w - [1, 2, 3]))),
        "NumPy example: max |w| after 100 steps": float(np.max(abs(w))),
        "NumPy example: max |w - [0.5, 1, 1.5]| after 20,000 steps": float(
            np.max(abs(w_long - [0.5, 1.0, 1.5]))
        ),
    }
    return Measurement(
        fig,
        samples={
            CLOSE: [0.1 - fig["NumPy example: max |w - [1, 2, 3]| after 100 steps"]],
            DOWN: [math.log(losses[0] / losses[-1]) if len(losses) == 5 else -math.inf],
        },
        remarks=[
            "PyTorch example printed: " + " | ".join(printed_torch.strip().splitlines()),
            "NumPy example printed: " + printed_numpy.strip(),
            "Each Adam step moves a weight by about alpha = 1e-3, so 100 steps cannot go further "
            "than 0.1 from the start; and the gradient as written, 2w - target, vanishes at "
            "target / 2 (the gradient of ||w - target||^2 is 2(w - target)). Run long enough, the "
            "loop settles at [0.5, 1, 1.5].",
        ],
    )


CLOSE = "0.1 minus the NumPy loop's largest distance from [1, 2, 3]"
DOWN = "log(the PyTorch loop's printed loss at epoch 0 / at epoch 40), -inf unless 5 lines"


CLAIM = Claim(
    key="seed-code",
    title="The seed's two code examples, run as written",
    quote=(
        'print(f"converged to: {w}") # should be close to [1, 2, 3]  -  and the PyTorch '
        "loop, the same for all optimizers, printing the loss every 10 epochs."
    ),
    experiment=(
        "Execute both examples exactly as the seed gives them (indentation restored) "
        "and compare what they print with what the seed says."
    ),
    statements=(
        Statement(
            "pytorch-loop",
            "The PyTorch loop runs as written, prints the loss every 10 epochs, and the loss "
            "goes down.",
            (
                support("it prints 5 lines", "PyTorch example: printed lines", ">=", 5),
                support("... not more", "PyTorch example: printed lines", "<=", 5),
                support(
                    "the loss at epoch 40 is below the loss at epoch 0",
                    "PyTorch example: loss at epoch 40",
                    "<",
                    "PyTorch example: loss at epoch 0",
                ),
            ),
            effect=EffectSpec(
                DOWN,
                0.0,
                "log of the printed loss at epoch 0 over the one at epoch 40 (positive: it "
                "went down; it runs and prints as written, or the claim fails with its "
                "error); the code is seeded, so one run measures it exactly",
                deterministic=True,
            ),
        ),
        Statement(
            "numpy-converges",
            "The NumPy Adam loop converges close to [1, 2, 3].",
            (
                support(
                    "every weight ends within 0.1 of [1, 2, 3]",
                    "NumPy example: max |w - [1, 2, 3]| after 100 steps",
                    "<",
                    0.1,
                ),
            ),
            effect=EffectSpec(
                CLOSE,
                0.0,
                "0.1 minus the largest distance of a weight from [1, 2, 3] after the loop's "
                "100 steps (positive: every weight within 0.1); the code is deterministic, so "
                "one run measures it exactly",
                deterministic=True,
            ),
        ),
    ),
    measure=measure,
)
