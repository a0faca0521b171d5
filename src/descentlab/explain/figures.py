"""The explainer's sections: each idea of the seed as runs of descentlab's own rules.

Every figure is computed here, in Python, by the rules the library runs (the NumPy
drop-ins of :mod:`descentlab.numpy`, the rule chains of :mod:`descentlab.rules`, the torch
drop-ins for the training-loop pitfalls), once for every point of the section's control
grid. The page only looks the runs up: a control snaps to its grid, and nothing is
re-implemented in JavaScript.

A section is a plain dict (JSON, read by the page's script):

* ``key``, ``title``, ``text`` (paragraphs), ``workload`` and ``grid`` (what ran);
* ``controls``: ``{"id", "label", "values", "shown", "start"}`` (a 2-value control with
  ``"toggle": True`` is a checkbox);
* ``figures``: ``{"id", "title", "x", "y", "log_x", "log_y", "caption", "equal"}``;
* ``runs``: for each grid point, keyed by its control indices joined with ``_``, the
  traces of every figure (``{"x", "y", "name", ...}`` as Plotly reads them);
* ``static``: traces drawn under the runs in a figure (loss contours);
* ``claims``: the ``descentlab reproduce`` claims the section's text speaks of.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .. import numpy as dnp
from ..reproduce.stale_momentum import FORMS, step_sizes

Trace = dict[str, Any]
Section = dict[str, Any]

DIGITS = 4  # significant digits kept in the page's data


def _r(values: Iterable[float]) -> list[float | None]:
    """Rounded for the page; a non-finite value (a diverged run) becomes a gap (None)."""
    out: list[float | None] = []
    for v in values:
        f = float(v)
        out.append(float(f"{f:.{DIGITS}g}") if math.isfinite(f) else None)
    return out


def line(x: Iterable[float], y: Iterable[float], name: str, **style: Any) -> Trace:
    return {"x": _r(x), "y": _r(y), "name": name, "mode": "lines", "type": "scatter", **style}


def _grid(
    controls: Sequence[dict[str, Any]], run: Callable[..., dict[str, list[Trace]]]
) -> dict[str, dict[str, list[Trace]]]:
    """``run(*values)`` at every point of the controls' grid, keyed by the indices."""
    out = {}
    for idx in itertools.product(*(range(len(c["values"])) for c in controls)):
        values = [c["values"][i] for c, i in zip(controls, idx, strict=True)]
        out["_".join(map(str, idx))] = run(*values)
    return out


def control(
    cid: str, label: str, values: Sequence[Any], start: Any, fmt: str = "{:g}", **extra: Any
) -> dict[str, Any]:
    return {
        "id": cid,
        "label": label,
        "values": list(values),
        "shown": [fmt.format(v) if not isinstance(v, str) else v for v in values],
        "start": list(values).index(start),
        "toggle": False,
        **extra,
    }


def _contours(f: Callable[[np.ndarray, np.ndarray], np.ndarray], xs: np.ndarray, ys: np.ndarray):
    """Log-spaced loss contours over the plane, drawn under the paths."""
    gx, gy = np.meshgrid(xs, ys)
    z = np.log10(np.maximum(f(gx, gy), 1e-12))
    return {
        "x": _r(xs),
        "y": _r(ys),
        "z": [_r(row) for row in z],
        "type": "contour",
        "name": "log10 loss",
        "showscale": False,
        "ncontours": 18,
        "contours": {"coloring": "lines"},
        "colorscale": "Greys",
        "hoverinfo": "skip",
        "showlegend": False,
    }


def _path(opt: dnp.Transformation, grad: Callable[[np.ndarray, int], np.ndarray], w0, steps):
    """The iterates of ``opt`` from ``w0``: ``grad(w, t)`` is the gradient at step t."""
    w, state = np.array(w0, dtype=float), opt.init(np.array(w0, dtype=float))
    path = [w.copy()]
    with np.errstate(all="ignore"):
        for t in range(1, steps + 1):
            w, state = opt.update(w, grad(w, t), state)
            path.append(w.copy())
            if not np.all(np.isfinite(w)) or np.max(np.abs(w)) > 1e6:
                break  # diverged: the path ends here
    return np.array(path)


# ------------------------------------------------------------------ 1. batch, SGD, mini-batch


def regimes() -> Section:
    rng = np.random.default_rng(0)
    n = 100
    x = rng.standard_normal((n, 2)) * np.array([1.0, 0.4])
    w_true = np.array([2.0, -1.0])
    y = x @ w_true + 0.5 * rng.standard_normal(n)  # sampling noise: real data, real error
    w_ls = np.linalg.lstsq(x, y, rcond=None)[0]

    def loss(w: np.ndarray) -> float:
        return float(0.5 * np.mean((x @ w - y) ** 2))

    def loss_plane(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        r = x[:, 0, None, None] * a + x[:, 1, None, None] * b - y[:, None, None]
        return 0.5 * np.mean(r**2, axis=0) - loss(w_ls) + 1e-3

    epochs, w0 = 5, np.array([-1.0, 2.0])

    def run_batch(lr: float, batch: int) -> tuple[np.ndarray, list[float]]:
        order_rng = np.random.default_rng(1)
        batches = []
        for _ in range(epochs):
            perm = order_rng.permutation(n)
            batches += [perm[i : i + batch] for i in range(0, n, batch)]

        def grad(w: np.ndarray, t: int) -> np.ndarray:
            idx = batches[t - 1]
            return x[idx].T @ (x[idx] @ w - y[idx]) / len(idx)

        path = _path(dnp.sgd(lr=lr), grad, w0, len(batches))
        seen = [min(k, len(batches)) * batch / n for k in range(len(path))]  # epochs
        return path, seen

    lrs = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
    sizes = (2, 5, 10, 20, 50)
    controls = [
        control("lr", "learning rate", lrs, 0.1),
        control("batch", "mini-batch size", sizes, 10, "{:d}"),
    ]

    def run(lr: float, batch: int) -> dict[str, list[Trace]]:
        paths, curves = [], []
        for name, b, color in (
            ("batch GD (all 100)", n, "#1f77b4"),
            (f"mini-batch ({batch})", batch, "#2ca02c"),
            ("SGD (1 sample)", 1, "#d62728"),
        ):
            path, seen = run_batch(lr, b)
            paths.append(line(path[:, 0], path[:, 1], name, line={"color": color}))
            curves.append(line(seen, [loss(w) for w in path], name, line={"color": color}))
        return {"regimes-path": paths, "regimes-loss": curves}

    xs, ys = np.linspace(-1.5, 3.0, 60), np.linspace(-2.0, 2.5, 60)
    return {
        "key": "regimes",
        "title": "Batch gradient descent, SGD and mini-batch SGD",
        "text": [
            "Batch gradient descent computes the gradient on all the data before each step: "
            "exact, but one step per pass. SGD steps after every single example: many cheap, "
            "noisy steps. Mini-batch SGD averages a few examples: less noise per step, "
            "still many steps per pass.",
            "The three runs below see the same data the same number of times (five passes, "
            "equal compute): batch GD gets 5 steps, SGD 500. Move the learning rate and the "
            "mini-batch size and watch where each one is after the same work.",
        ],
        "workload": "2-D least squares: 100 samples y = x·(2, −1) + noise (σ 0.5), features "
        "scaled 1 and 0.4; start (−1, 2); five passes over the data for every run.",
        "grid": f"lr {', '.join(map(str, lrs))} × mini-batch {', '.join(map(str, sizes))}",
        "controls": controls,
        "figures": [
            {
                "id": "regimes-path",
                "title": "Paths over the loss contours",
                "x": "weight 1",
                "y": "weight 2",
                "equal": True,
                "caption": "Look for the noise: SGD's path jitters around the minimum while "
                "batch GD moves smoothly but only five times.",
            },
            {
                "id": "regimes-loss",
                "title": "Training loss against passes over the data",
                "x": "passes over the data (equal compute)",
                "y": "training loss",
                "log_y": True,
                "caption": "At equal compute the cheap, noisy steps get further: compare "
                "the curves at 5 passes.",
            },
        ],
        "static": {"regimes-path": [_contours(loss_plane, xs, ys)]},
        "runs": _grid(controls, run),
        "claims": ["regimes"],
    }


# ------------------------------------------------------------------ 2. momentum


def momentum() -> Section:
    h = np.array([1.0, 20.0])  # a ravine: curvature 1 along x, 20 across it

    def grad(w: np.ndarray, t: int) -> np.ndarray:
        return h * w

    def plane(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return 0.5 * (h[0] * a**2 + h[1] * b**2)

    w0, steps = np.array([-8.0, 1.0]), 80
    lrs = (0.01, 0.02, 0.04, 0.06, 0.08, 0.095)
    betas = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
    controls = [control("lr", "learning rate", lrs, 0.08), control("beta", "β", betas, 0.8)]

    def run(lr: float, beta: float) -> dict[str, list[Trace]]:
        out: dict[str, list[Trace]] = {"momentum-path": [], "momentum-y": [], "momentum-loss": []}
        for name, opt, color in (
            ("heavy-ball (torch)", dnp.sgd(lr=lr, momentum=beta), "#1f77b4"),
            ("EMA form (the seed)", dnp.momentum(lr=lr, momentum=beta), "#ff7f0e"),
            ("no momentum", dnp.sgd(lr=lr), "#7f7f7f"),
        ):
            path = _path(opt, grad, w0, steps)
            t = list(range(len(path)))
            style = {"line": {"color": color}}
            out["momentum-path"].append(line(path[:, 0], path[:, 1], name, **style))
            out["momentum-y"].append(line(t, path[:, 1], name, **style))
            out["momentum-loss"].append(line(t, [float(plane(*w)) for w in path], name, **style))
        return out

    return {
        "key": "momentum",
        "title": "Momentum",
        "text": [
            "In a ravine the gradient points mostly across it: gradient descent zig-zags "
            "between the walls and creeps along the floor. Momentum keeps a running sum of "
            "past gradients: the steps across the ravine cancel, the steps along it add up.",
            "torch's heavy-ball form adds the gradient to a buffer (b = βb + g) and steps by "
            "lr·b, so a steady gradient moves it 1/(1−β) times as far. The seed's EMA form "
            "averages instead (v = βv + (1−β)g): the same path as heavy-ball at lr·(1−β). At "
            "β = 0 all three coincide; at β = 0.99 watch the overshoot.",
        ],
        "workload": "f(x, y) = ½(x² + 20y²) from (−8, 1), 80 steps, exact gradients.",
        "grid": f"lr {', '.join(map(str, lrs))} × β {', '.join(map(str, betas))}",
        "controls": controls,
        "figures": [
            {
                "id": "momentum-path",
                "title": "Paths through the ravine",
                "x": "x (along the ravine)",
                "y": "y (across it)",
                "caption": "Compare the zig-zag across the ravine with the progress along "
                "it: at a large lr plain descent bounces between the walls.",
            },
            {
                "id": "momentum-y",
                "title": "The oscillation across the ravine",
                "x": "step",
                "y": "y",
                "caption": "The swing of y from wall to wall, step by step.",
            },
            {
                "id": "momentum-loss",
                "title": "Loss",
                "x": "step",
                "y": "loss",
                "log_y": True,
                "caption": "Who reaches the bottom first at this lr and β.",
            },
        ],
        "static": {
            "momentum-path": [_contours(plane, np.linspace(-9, 2, 60), np.linspace(-1.6, 1.6, 60))]
        },
        "runs": _grid(controls, run),
        "claims": ["momentum-ravine", "momentum-noise", "momentum-saddle"],
    }


# ------------------------------------------------------------------ 3. RMSProp


def rmsprop() -> Section:
    h = np.array([100.0, 0.01])  # one steep and one flat direction: gradients 10,000x apart

    def grad(w: np.ndarray, t: int) -> np.ndarray:
        return h * w

    w0, steps = np.array([1.0, 1.0]), 100
    lrs = (0.001, 0.003, 0.01, 0.03, 0.1)
    alphas = (0.5, 0.9, 0.99, 0.999)
    controls = [
        control("lr", "learning rate", lrs, 0.01),
        control("alpha", "decay α of the squared-gradient average", alphas, 0.99),
    ]

    def run(lr: float, alpha: float) -> dict[str, list[Trace]]:
        out: dict[str, list[Trace]] = {"rmsprop-path": [], "rmsprop-steps": []}
        for name, opt, dash in (
            ("RMSProp", dnp.rmsprop(lr=lr, alpha=alpha), "solid"),
            ("SGD", dnp.sgd(lr=lr), "dot"),
        ):
            path = _path(opt, grad, w0, steps)
            t = list(range(1, len(path)))
            out["rmsprop-path"].append(line(path[:, 0], path[:, 1], name, line={"dash": dash}))
            moves = np.abs(np.diff(path, axis=0))
            for i, (coord, color) in enumerate((("steep x", "#d62728"), ("flat y", "#1f77b4"))):
                out["rmsprop-steps"].append(
                    line(t, moves[:, i], f"{name}: {coord}", line={"color": color, "dash": dash})
                )
        return out

    return {
        "key": "rmsprop",
        "title": "RMSProp: a step size for every weight",
        "text": [
            "One learning rate cannot suit a steep direction and a flat one at once: small "
            "enough for the steep one, it barely moves the flat one. RMSProp divides each "
            "weight's step by the root of a running average of its squared gradients, so "
            "every weight moves about lr per step, whatever its gradient's scale.",
            "The right figure shows each coordinate's actual step size: SGD's steps differ by "
            "the gradients' ratio; RMSProp's start equal. The decay α sets how long the "
            "average remembers.",
        ],
        "workload": "f(x, y) = ½(100x² + 0.01y²) from (1, 1), 100 steps, exact gradients.",
        "grid": f"lr {', '.join(map(str, lrs))} × α {', '.join(map(str, alphas))}",
        "controls": controls,
        "figures": [
            {
                "id": "rmsprop-path",
                "title": "Paths (steep x, flat y)",
                "x": "x (curvature 100)",
                "y": "y (curvature 0.01)",
                "caption": "SGD at an lr stable for x hardly moves along y; RMSProp moves both.",
            },
            {
                "id": "rmsprop-steps",
                "title": "Step size per coordinate",
                "x": "step",
                "y": "|Δw| per step",
                "log_y": True,
                "caption": "The per-coordinate step sizes: one global lr (dotted) against "
                "RMSProp's per-weight scaling (solid).",
            },
        ],
        "static": {},
        "runs": _grid(controls, run),
        "claims": ["rmsprop-scales"],
    }


# ------------------------------------------------------------------ 4. Adam


def adam() -> Section:
    rng = np.random.default_rng(2)
    noise = rng.standard_normal((100, 2))
    h = np.array([1.0, 10.0])

    def grad(w: np.ndarray, t: int) -> np.ndarray:
        return h * w + 0.3 * noise[t - 1]

    def plane(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return 0.5 * (h[0] * a**2 + h[1] * b**2)

    lr, w0, steps, early = 0.1, np.array([3.0, 1.0]), 60, 20
    b1s = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)
    b2s = (0.9, 0.99, 0.999, 0.9999)
    epss = (1e-8, 1e-4, 1e-2, 1e-1)
    controls = [
        control("beta1", "β1 (momentum)", b1s, 0.9),
        control("beta2", "β2 (squared-gradient average)", b2s, 0.999),
        control("eps", "ε", epss, 1e-8),
        control("correction", "bias correction", ("on", "off"), "on", toggle=True),
    ]

    def run(b1: float, b2: float, eps: float, correction: str) -> dict[str, list[Trace]]:
        out: dict[str, list[Trace]] = {"adam-early": [], "adam-path": []}
        for on in (True, False):
            opt = dnp.adam(lr=lr, betas=(b1, b2), eps=eps, bias_correction=on)
            path = _path(opt, grad, w0, steps)
            moves = np.mean(np.abs(np.diff(path[: early + 1], axis=0)), axis=1) / lr
            shown = (correction == "on") == on
            label = "with bias correction" if on else "without"
            out["adam-early"].append(
                line(
                    list(range(1, len(moves) + 1)),
                    moves,
                    label,
                    line={"color": "#1f77b4" if on else "#ff7f0e", "width": 3 if shown else 1},
                )
            )
            if shown:
                out["adam-path"].append(line(path[:, 0], path[:, 1], f"Adam, {label}"))
        return out

    return {
        "key": "adam",
        "title": "Adam: momentum + RMSProp, with bias correction",
        "text": [
            "Adam keeps both running averages: m of the gradients (momentum, β1) and v of "
            "their squares (RMSProp, β2), and steps by lr·m/(√v + ε). Both averages start at "
            "zero, so in the first steps they are too small; dividing by 1 − β^t (bias "
            "correction) undoes that.",
            "The left figure is the size of each of the first 20 steps, in units of lr (per "
            "weight). Without the correction the first step is (1−β1)/√(1−β2) times lr: "
            "about 3 lr at the defaults β1 = 0.9, β2 = 0.999, a third of lr at β2 = 0.9 (the "
            "seed's 'tiny first updates' hold only where β2 forgets faster than β1). With "
            "the correction the first steps are about lr, whatever the betas. A large ε "
            "makes small gradients take small steps again.",
        ],
        "workload": "f(x, y) = ½(x² + 10y²) with Gaussian gradient noise (σ 0.3), from "
        "(3, 1), lr 0.1, 60 steps; the same noise for every run.",
        "grid": f"β1 {', '.join(map(str, b1s))} × β2 {', '.join(map(str, b2s))} × ε "
        f"{', '.join(f'{e:g}' for e in epss)} × bias correction on/off",
        "controls": controls,
        "figures": [
            {
                "id": "adam-early",
                "title": "The first 20 steps' size, with and without correction",
                "x": "step",
                "y": "mean |Δw| per weight / lr",
                "log_y": True,
                "caption": "Move β2: without the correction the first steps swing from "
                "tiny (β2 0.9) to three times lr (β2 0.999); with it they stay near lr.",
            },
            {
                "id": "adam-path",
                "title": "The path (the toggle chooses the run)",
                "x": "x",
                "y": "y",
                "caption": "Switch the correction off and on: the first steps of the path "
                "change, the end hardly does.",
            },
        ],
        "static": {
            "adam-path": [_contours(plane, np.linspace(-1, 3.5, 60), np.linspace(-1.2, 1.2, 60))]
        },
        "runs": _grid(controls, run),
        "claims": ["adam-composition", "bias-correction"],
    }


# ------------------------------------------------------------------ 5. AdamW vs Adam + L2


def adamw() -> Section:
    target = np.array([3.0, 2.0])
    lr, steps, w0 = 0.05, 300, np.array([0.0, 0.0])
    scales = (0.01, 0.1, 1.0, 10.0, 100.0)
    wds = (0.01, 0.1, 0.3, 1.0)
    controls = [
        control("scale", "gradient scale (the loss multiplied by)", scales, 1.0),
        control("wd", "weight decay", wds, 0.3),
    ]

    def run(scale: float, wd: float) -> dict[str, list[Trace]]:
        def grad(w: np.ndarray, t: int) -> np.ndarray:
            return scale * (w - target)

        out: dict[str, list[Trace]] = {"adamw-path": [], "adamw-norm": []}
        for name, opt, color in (
            (
                "Adam + L2 (weight_decay inside the step)",
                dnp.adam(lr=lr, weight_decay=wd),
                "#d62728",
            ),
            ("AdamW (decoupled)", dnp.adamw(lr=lr, weight_decay=wd), "#2ca02c"),
            ("Adam, no decay", dnp.adam(lr=lr), "#7f7f7f"),
        ):
            path = _path(opt, grad, w0, steps)
            style = {"line": {"color": color}}
            out["adamw-path"].append(line(path[:, 0], path[:, 1], name, **style))
            out["adamw-norm"].append(
                line(list(range(len(path))), np.linalg.norm(path, axis=1), name, **style)
            )
        return out

    return {
        "key": "adamw",
        "title": "AdamW against Adam with L2",
        "text": [
            "Adam's weight_decay adds wd·w to the gradient, which then goes through Adam's "
            "division by √v: the decay is rescaled with the gradient, strong where gradients "
            "are small and negligible where they are large. AdamW applies the decay to the "
            "weights directly, lr·wd·w per step, whatever the gradient.",
            "Move the gradient scale: the loss is the same up to a factor, so the best "
            "weights do not change. AdamW's path does not move; Adam + L2's does.",
        ],
        "workload": "f(w) = scale · ½‖w − (3, 2)‖² from (0, 0), lr 0.05, 300 steps.",
        "grid": f"gradient scale {', '.join(map(str, scales))} × weight decay "
        f"{', '.join(map(str, wds))}",
        "controls": controls,
        "figures": [
            {
                "id": "adamw-path",
                "title": "Paths to the target (3, 2)",
                "x": "weight 1",
                "y": "weight 2",
                "caption": "Where each rule ends: the decay pulls toward 0, by how much "
                "depends on the rule.",
            },
            {
                "id": "adamw-norm",
                "title": "Weight norm",
                "x": "step",
                "y": "‖w‖",
                "caption": "Adam + L2's final norm follows the gradient scale; AdamW's does not.",
            },
        ],
        "static": {},
        "runs": _grid(controls, run),
        "claims": ["adam-l2-vs-adamw"],
    }


# ------------------------------------------------------------------ 6. pitfalls


def zero_grad() -> Section:
    import torch

    from .. import torch as dt

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, generator=gen, dtype=torch.float64)
    y = x @ torch.randn(10, 1, generator=gen, dtype=torch.float64)
    lrs = (0.001, 0.01, 0.03)
    controls = [control("lr", "learning rate (SGD, momentum 0.9)", lrs, 0.01)]
    steps = 40

    def run(lr: float) -> dict[str, list[Trace]]:
        out: dict[str, list[Trace]] = {"zero-grad-norm": [], "zero-grad-loss": []}
        for name, zero, color in (
            ("with zero_grad()", True, "#2ca02c"),
            ("zero_grad() forgotten", False, "#d62728"),
        ):
            torch.manual_seed(0)
            model = torch.nn.Linear(10, 1, bias=False).double()
            opt = dt.SGD(model.parameters(), lr=lr, momentum=0.9)
            norms, losses = [], []
            for _ in range(steps):
                if zero:
                    opt.zero_grad()
                loss = torch.nn.functional.mse_loss(model(x), y)
                loss.backward()
                norms.append(float(model.weight.grad.norm()))  # type: ignore[union-attr]
                losses.append(float(loss.detach()))
                opt.step()
            t = list(range(1, steps + 1))
            style = {"line": {"color": color}}
            out["zero-grad-norm"].append(line(t, norms, name, **style))
            out["zero-grad-loss"].append(line(t, losses, name, **style))
        return out

    return {
        "key": "zero-grad",
        "title": "Pitfall: forgetting zero_grad()",
        "text": [
            "backward() adds each new gradient to .grad; it does not replace it. Without "
            "optimizer.zero_grad() the step reads the sum of every gradient so far, and the "
            "update stops following the current gradient.",
        ],
        "workload": "the seed's PyTorch loop on a 10-feature linear regression (64 samples), "
        "torch autograd and descentlab's SGD (momentum 0.9), 40 steps.",
        "grid": f"lr {', '.join(map(str, lrs))}",
        "controls": controls,
        "figures": [
            {
                "id": "zero-grad-norm",
                "title": "What the step reads: ‖.grad‖",
                "x": "step",
                "y": "‖weight.grad‖",
                "log_y": True,
                "caption": "With zero_grad the gradient shrinks as the model fits; without "
                "it, it piles up step after step.",
            },
            {
                "id": "zero-grad-loss",
                "title": "Training loss",
                "x": "step",
                "y": "loss",
                "log_y": True,
                "caption": "The piled-up gradient drives the loss away.",
            },
        ],
        "static": {},
        "runs": _grid(controls, run),
        "claims": ["zero-grad"],
    }


def stale_momentum() -> Section:
    betas = (0.5, 0.9, 0.99)
    cuts = (2.0, 10.0, 100.0)
    lr0, cut_at, steps = 0.05, 10, 30
    controls = [
        control("beta", "momentum β", betas, 0.9),
        control("cut", "lr divided by, at step 10", cuts, 10.0),
    ]
    labels = ("Keras form (lr inside the buffer)", "torch form (lr outside)", "the seed's EMA form")
    colors = ("#d62728", "#1f77b4", "#2ca02c")

    def run(beta: float, cut: float) -> dict[str, list[Trace]]:
        out: dict[str, list[Trace]] = {"stale-steps": []}
        for form, name, color in zip(FORMS, labels, colors, strict=True):
            # the reproduce claim's three forms and loop, at this beta and cut
            sizes = step_sizes(form, beta=beta, cut=1 / cut, cut_at=cut_at, lr0=lr0, steps=steps)
            out["stale-steps"].append(
                line(list(range(1, steps + 1)), sizes, name, line={"color": color})
            )
        return out

    return {
        "key": "stale-momentum",
        "title": "Pitfall: stale momentum across an lr cut",
        "text": [
            "Where the learning rate sits decides what a cut does. In Keras's SGD the buffer "
            "holds lr-scaled steps (v = βv − lr·g): after a cut the old, large steps keep "
            "coming until the buffer forgets them. torch's form and the seed's EMA form "
            "multiply the buffer by the lr when they use it, so the cut applies at once.",
        ],
        "workload": "f(w) = ½w² from w = 10, lr 0.05 (the EMA form at lr/(1−β), the same "
        "steps), cut after step 10.",
        "grid": f"β {', '.join(map(str, betas))} × cut {', '.join(f'{c:g}' for c in cuts)}",
        "controls": controls,
        "figures": [
            {
                "id": "stale-steps",
                "title": "Step sizes around the lr cut",
                "x": "step (the cut after step 10)",
                "y": "|Δw|",
                "log_y": True,
                "caption": "After step 10: the Keras form's steps stay large for about "
                "1/(1−β) steps; the other two drop at once.",
            }
        ],
        "static": {},
        "runs": _grid(controls, run),
        "claims": ["stale-momentum"],
    }


def finetuning() -> Section:
    import torch

    from .. import torch as dt
    from ..lab.workloads import digits_data
    from ..reproduce.finetune import noisy as with_noise

    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in digits_data())
    xtr, xte, ytr, yte = xtr.float(), xte.float(), ytr.long(), yte.long()
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = dt.Adam(base.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(600):  # pre-training on the clean digits
        idx = torch.randint(0, len(xtr), (32,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(base(xtr[idx]), ytr[idx]).backward()
        opt.step()
    state = {k: v.clone() for k, v in base.state_dict().items()}
    noisy = with_noise(xtr, 1)
    lrs = (1e-5, 1e-4, 1e-3, 1e-2)
    controls = [control("lr", "fine-tuning lr (Adam)", lrs, 1e-3)]
    steps = 60

    def accuracy(x: Any, y: Any) -> float:
        with torch.no_grad():
            return float((base(x).argmax(-1) == y).float().mean())

    def run(lr: float) -> dict[str, list[Trace]]:
        base.load_state_dict(state)
        tune = dt.Adam(base.parameters(), lr=lr)
        first = base[0]
        assert isinstance(first, torch.nn.Linear)
        w = first.weight
        ratios, kept = [], [accuracy(xte, yte)]
        g = torch.Generator().manual_seed(1)
        for t in range(1, steps + 1):
            idx = torch.randint(0, len(noisy), (32,), generator=g)
            before = w.detach().clone()
            tune.zero_grad()
            torch.nn.functional.cross_entropy(base(noisy[idx]), ytr[idx]).backward()
            tune.step()
            ratios.append(float((w.detach() - before).norm() / before.norm()))
            if t % 10 == 0:
                kept.append(accuracy(xte, yte))
        return {
            "finetune-ratio": [
                line(list(range(1, steps + 1)), ratios, f"lr {lr:g}", line={"color": "#1f77b4"}),
                line(
                    [1, steps],
                    [3e-2, 3e-2],
                    "descentlab check's threshold (3e-2)",
                    line={"color": "#d62728", "dash": "dash"},
                ),
            ],
            "finetune-kept": [
                line(
                    list(range(0, steps + 1, 10)),
                    [100 * a for a in kept],
                    f"lr {lr:g}",
                    mode="lines+markers",
                ),
            ],
        }

    return {
        "key": "finetune",
        "title": "Pitfall: a fine-tuning lr that is too large",
        "text": [
            "Adam moves every weight by about lr per step, whatever its gradient. Pre-trained "
            "weights are small numbers (here about 0.1): at lr 1e-3 each step changes the "
            "layer by about a two-hundredth of its size, at 1e-2 by a twentieth. The "
            "update-to-weight ratio ‖Δw‖/‖w‖ shows it from the first step, before any "
            "accuracy moves; descentlab check warns above 3e-2.",
            "This model is small and the new task close to the old one, so even 1e-2 costs "
            "the original task only a few points here; the fine-tuning claim of descentlab "
            "reproduce measures the forgetting of each lr run to convergence.",
        ],
        "workload": "an MLP 64-64-10 pre-trained on the digits (600 steps of Adam 1e-3), "
        "fine-tuned on the same digits with pixel noise (σ 0.35), 60 steps of 32; ratio of "
        "the first layer's weights.",
        "grid": f"lr {', '.join(f'{v:g}' for v in lrs)}",
        "controls": controls,
        "figures": [
            {
                "id": "finetune-ratio",
                "title": "Update-to-weight ratio, first layer",
                "x": "fine-tuning step",
                "y": "‖Δw‖ / ‖w‖",
                "log_y": True,
                "caption": "Each decade of lr moves the ratio by a decade; the dashed line "
                "is where descentlab check speaks up.",
            },
            {
                "id": "finetune-kept",
                "title": "What the original task keeps",
                "x": "fine-tuning step",
                "y": "clean test accuracy, %",
                "caption": "The original task's accuracy every 10 steps: at 1e-2 it wobbles "
                "by a few points; below, it hardly moves.",
            },
        ],
        "static": {},
        "runs": _grid(controls, run),
        "claims": ["finetune-lr"],
    }


SECTIONS = (regimes, momentum, rmsprop, adam, adamw, zero_grad, stale_momentum, finetuning)
"""In the seed's order: the variants, then the training loop's pitfalls."""
