"""Workloads: what the optimizers are compared on. Every dataset is made or shipped offline.

A :class:`Workload` builds a :class:`Problem` for a seed: parameters, a loss over a batch of
training indices (``None`` = the full training set), and a held-out evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import LabError

Tensor = torch.Tensor


class Problem:
    """One instance of a workload: parameters, a training loss, and an evaluation.

    Args:
        params: the parameters to optimize (leaf tensors with ``requires_grad``).
        loss: ``loss(indices)`` -> scalar loss over those training samples; ``None`` means
            every sample (batch gradient descent).
        n_train: number of training samples, or ``None`` when the objective has no data
            (a 2-D landscape): then every regime is full batch.
        evaluate: optional ``() -> {"test_loss": ..., "test_acc": ...}``.
        point: optional ``() -> (x, y)`` position, recorded for trajectory plots.
        parts: what the problem is made of, by name, for code that computes the same loss
            another way (the lab's vectorized runs, :mod:`descentlab.lab.batched`, which
            train several problems of one kind as one). The makers of this module fill it,
            with ``kind`` naming the formula the other entries go into:

            * ``"landscape"`` (the 2-D functions): ``f`` (``f(x, y)``), ``w`` (the trained
              point, ``params[0]``), ``noise`` (the gradient-noise scale) and ``gen`` (the
              generator the noise is drawn from, one ``randn(2)`` per gradient);
            * ``"quadratic"`` (noisy-quadratic): ``w`` (``params[0]``), ``h`` (the matrix)
              and ``centers`` (one row per sample): the loss of a batch is the mean over its
              rows c of ``0.5 (w - c)^T h (w - c)``;
            * ``"supervised"`` (:func:`supervised_problem`): ``model`` (whose parameters are
              ``params``), ``x``, ``y``, ``x_test``, ``y_test`` (None without a test set),
              ``loss_fn`` and ``classification`` (whether the evaluation adds ``test_acc``).

            Empty (the default) for any other problem. The entries describe the problem as
            built: a problem whose ``loss``, ``evaluate`` or ``point`` is replaced
            afterwards must not be handed to code that reads ``parts``.
    """

    def __init__(
        self,
        params: list[Tensor],
        loss: Callable[[Tensor | None], Tensor],
        n_train: int | None,
        evaluate: Callable[[], dict[str, float]] | None = None,
        point: Callable[[], tuple[float, float]] | None = None,
        parts: Mapping[str, Any] | None = None,
    ) -> None:
        self.params, self.loss, self.n_train = params, loss, n_train
        self.evaluate, self.point = evaluate, point
        self.parts: dict[str, Any] = dict(parts or {})

    def full_loss(self) -> float:
        with torch.no_grad():
            return float(self.loss(None))


@dataclass(frozen=True)
class Option:
    """A workload option: a number of ``kind`` above ``low`` (``> low``, or ``>= low`` when
    ``inclusive``) and at most ``high``."""

    kind: type  # int or float (a float option also takes an integer)
    low: float
    inclusive: bool = False
    high: float | None = None

    @property
    def rule(self) -> str:
        what = "an integer" if self.kind is int else "a finite number"
        rule = f"{what} {'>=' if self.inclusive else '>'} {self.low:g}"
        return rule + (f" and <= {self.high:g}" if self.high is not None else "")

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        number = float(value)
        if not math.isfinite(number):
            return False
        above = number >= self.low if self.inclusive else number > self.low
        return above and (self.high is None or number <= self.high)


NOISE = Option(float, 0.0, inclusive=True, high=1e6)


@dataclass(frozen=True)
class Workload:
    """A registered workload.

    Attributes:
        name: registry key (``descentlab list``).
        summary: one line for listings.
        build: ``(seed, options) -> Problem``.
        lrs: learning rates tried per optimizer when the user gives none.
        steps: default number of steps (landscapes) or ``None`` when ``epochs`` sets it.
        epochs: default training budget in epochs (data workloads).
        regime: default data regime.
        target: training loss that counts as "reached" (steps/seconds to target).
        landscape: 2-D function ``f(x, y)`` for contour plots, if any.
        optimum: the minimizer of a landscape, if known.
    """

    name: str
    summary: str
    build: Callable[[int, dict[str, Any]], Problem]
    lrs: Mapping[str, tuple[float, ...]]
    steps: int | None = None
    epochs: float | None = None
    regime: str = "full"
    target: float | None = None
    landscape: Callable[[Any, Any], Any] | None = None
    optimum: tuple[float, float] | None = None
    bounds: tuple[float, float, float, float] | None = None  # xmin, xmax, ymin, ymax
    options: dict[str, Any] = field(default_factory=dict)  # defaults of some options
    accepts: Mapping[str, Option] = field(default_factory=dict)  # every option it takes

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise :class:`LabError` on an unknown option or a value out of its range."""
        for key, value in options.items():
            if key not in self.accepts:
                valid = ", ".join(self.accepts) if self.accepts else "none (it takes no options)"
                raise LabError(
                    f"unknown option {key!r} for workload {self.name!r}; valid options: {valid}"
                )
            option = self.accepts[key]
            if not option.accepts(value):
                raise LabError(f"{self.name}: option {key} must be {option.rule}, got {value!r}")


# ---------------------------------------------------------------- 2-D landscapes


def _landscape(
    f: Callable[[Tensor, Tensor], Tensor], start: tuple[float, float]
) -> Callable[[int, dict[str, Any]], Problem]:
    def build(seed: int, options: dict[str, Any]) -> Problem:
        w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        noise = float(options.get("noise", 0.0))
        gen = torch.Generator().manual_seed(seed)

        def loss(indices: Tensor | None) -> Tensor:
            value = f(w[0], w[1])
            if noise and torch.is_grad_enabled():
                # gradient noise: adds noise * xi to the gradient, leaves the value alone
                xi = torch.randn(2, generator=gen, dtype=torch.float64)
                value = value + noise * (xi @ w - (xi @ w).detach())
            return value

        parts = {"kind": "landscape", "f": f, "w": w, "noise": noise, "gen": gen}
        point = lambda: (float(w[0].detach()), float(w[1].detach()))  # noqa: E731
        return Problem([w], loss, None, point=point, parts=parts)

    return build


def ravine(kappa: float) -> Callable[[Any, Any], Any]:
    """An ill-conditioned quadratic ``0.5 * (x**2 + kappa * y**2)``: condition number kappa."""
    return lambda x, y: 0.5 * (x**2 + kappa * y**2)


def rosenbrock(x: Any, y: Any) -> Any:
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def saddle(x: Any, y: Any) -> Any:
    # a saddle at the origin, bounded below by the quartic: minima at (0, +-1/sqrt(2))
    return x**2 - y**2 + y**4


def beale(x: Any, y: Any) -> Any:
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def _ravine_build(seed: int, options: dict[str, Any]) -> Problem:
    return _landscape(ravine(float(options.get("kappa", 50.0))), (-4.0, 1.5))(seed, options)


# ---------------------------------------------------------------- data workloads


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def _supervised(
    make_model: Callable[..., torch.nn.Module],
    data: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    classification: bool,
) -> Callable[[int, dict[str, Any]], Problem]:
    loaded: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def build(seed: int, options: dict[str, Any]) -> Problem:
        if not loaded:  # once per process: every seed trains on the same data
            loaded.append(data())
        xtr, ytr, xte, yte = loaded[0]
        torch.manual_seed(seed)
        model = (make_model(bias=False) if options.get("bias", 1) == 0 else make_model()).double()
        # copies: a problem never shares its data with the cache or with another problem
        x, xt = torch.tensor(xtr, dtype=torch.float64), torch.tensor(xte, dtype=torch.float64)
        if classification:
            y, yt = torch.tensor(ytr, dtype=torch.long), torch.tensor(yte, dtype=torch.long)
            loss_fn: Callable[[Tensor, Tensor], Tensor] = torch.nn.functional.cross_entropy
        else:
            y, yt = torch.tensor(ytr, dtype=torch.float64), torch.tensor(yte, dtype=torch.float64)
            loss_fn = torch.nn.functional.mse_loss
        return supervised_problem(model, x, y, xt, yt, loss_fn, classification)

    return build


EVAL_CHUNK = 1024
"""Samples per forward pass when a whole set is evaluated without gradients: on a CPU the
activations of a thousand samples stay in its caches (a float64 1-D CNN evaluates 4,000
samples about twice as fast in chunks as at once); each sample's output is the same."""


def forward(model: torch.nn.Module, x: Tensor) -> Tensor:
    """``model(x)``; without gradients, in chunks of :data:`EVAL_CHUNK` samples, unless a
    module's output depends on the rest of the batch (batch norm in training mode) or the
    model does not return one tensor."""
    if torch.is_grad_enabled() or len(x) <= EVAL_CHUNK or _batch_dependent(model):
        return model(x)
    parts = [model(part) for part in x.split(EVAL_CHUNK)]
    if not all(isinstance(p, Tensor) for p in parts):  # a tuple, a dict...: left as it is
        return model(x)
    return torch.cat(parts)


def _batch_dependent(model: torch.nn.Module) -> bool:
    norms = torch.nn.modules.batchnorm._BatchNorm
    return any(isinstance(m, norms) and m.training for m in model.modules())


def supervised_problem(
    model: torch.nn.Module,
    x: Tensor,
    y: Tensor,
    x_test: Tensor | None,
    y_test: Tensor | None,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    classification: bool,
) -> Problem:
    """A :class:`Problem` for a model on in-memory tensors (also the user-model path)."""

    def loss(indices: Tensor | None) -> Tensor:
        xb, yb = (x, y) if indices is None else (x[indices], y[indices])
        value = loss_fn(forward(model, xb), yb)
        if not isinstance(value, Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise LabError(f"the loss must be a scalar tensor, got shape {shape}")
        return value.reshape(())

    def evaluate() -> dict[str, float]:
        if x_test is None or y_test is None:
            return {}
        with torch.no_grad():
            out = forward(model, x_test)
            result = {"test_loss": float(loss_fn(out, y_test))}
            if classification:
                result["test_acc"] = float((out.argmax(-1) == y_test).double().mean())
        return result

    params: list[Tensor] = [p for p in model.parameters() if p.requires_grad]
    parts = {
        "kind": "supervised",
        "model": model,
        "x": x,
        "y": y,
        "x_test": x_test,
        "y_test": y_test,
        "loss_fn": loss_fn,
        "classification": classification,
    }
    return Problem(params, loss, len(x), evaluate, parts=parts)


def _linreg_data():
    # the seed's example: nn.Linear(10, 1) on X = randn(100, 10), y = randn(100, 1),
    # with a held-out draw of the same size
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 10, generator=gen), torch.randn(200, 1, generator=gen)
    return x[:100].numpy(), y[:100].numpy(), x[100:].numpy(), y[100:].numpy()


def digits_data():
    x, y = _load_digits()
    return _split(x / 16.0, y, 0.2)


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits, as ``load_digits()`` gives them (``data``,
    ``target``), read from the file it reads without importing scikit-learn: importing it
    takes longer (about 1.5 s) than a whole batched sweep of digits takes."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    places = spec.submodule_search_locations if spec is not None else None
    path = Path(places[0], "datasets", "data", "digits.csv.gz") if places else None
    if path is None or not path.is_file():  # laid out otherwise: ask scikit-learn itself
        from sklearn.datasets import load_digits  # no download: bundled

        d = load_digits()
        return d.data, d.target
    raw = np.loadtxt(path, delimiter=",")
    return raw[:, :-1], raw[:, -1].astype(int)


def _cache_dir() -> Path:
    base = Path.home() / ".cache" / "descentlab"
    return base


def mnist1d_data():
    path = _cache_dir() / "mnist1d-5000-seed42.npz"
    if path.exists():
        with np.load(path) as z:
            return z["x"], z["y"], z["x_test"], z["y_test"]
    from mnist1d.data import get_dataset_args, make_dataset  # procedural, offline

    d = make_dataset(get_dataset_args())
    arrays = {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
    except OSError:
        pass  # a read-only home only costs the 3 s of generating it again
    return arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"]


class CNN1D(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Sequential(
            torch.nn.Conv1d(1, 16, 5, stride=2, padding=2), torch.nn.ReLU(),
            torch.nn.Conv1d(16, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        )  # fmt: skip
        self.head = torch.nn.Linear(16 * 10, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.conv(x.unsqueeze(1)).flatten(1))


def _noisy_quadratic(seed: int, options: dict[str, Any]) -> Problem:
    """DeepOBS quadratic_deep-style: 100-D, 90% of eigenvalues in [0, 1], 10% in [30, 60]."""
    dim, n = 100, int(options.get("samples", 1000))
    rng = np.random.default_rng(0)  # the problem is fixed; the seed moves the start and batches
    eig = np.concatenate([rng.uniform(0, 1, 90), rng.uniform(30, 60, 10)])
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    h = torch.from_numpy(q @ np.diag(eig) @ q.T)
    centers = torch.from_numpy(rng.standard_normal((n, dim)))
    gen = torch.Generator().manual_seed(seed)
    w = (torch.ones(dim, dtype=torch.float64) + 0.1 * torch.randn(dim, generator=gen,
         dtype=torch.float64)).requires_grad_()  # fmt: skip

    def loss(indices: Tensor | None) -> Tensor:
        c = centers if indices is None else centers[indices]
        d = w - c
        return 0.5 * ((d @ h) * d).sum(-1).mean()

    return Problem([w], loss, n, parts={"kind": "quadratic", "w": w, "h": h, "centers": centers})


def _mlp(inp: int, hidden: int, out: int) -> Callable[..., torch.nn.Module]:
    return lambda bias=True: torch.nn.Sequential(
        torch.nn.Linear(inp, hidden, bias=bias),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, out, bias=bias),
    )


BIAS = Option(int, 0, inclusive=True, high=1)
"""``bias=0``: the model's layers have no bias, so every parameter is a matrix (Muon)."""


_LANDSCAPE_LRS = {
    "sgd": (1e-3, 3e-3, 1e-2, 3e-2, 5e-2),
    "momentum": (3e-2, 1e-1, 3e-1, 1.0, 3.0),
    "rmsprop": (3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
    "adam": (3e-2, 1e-1, 3e-1, 1.0, 3.0),
    "adamw": (3e-2, 1e-1, 3e-1, 1.0, 3.0),
    "adagrad": (3e-2, 1e-1, 3e-1, 1.0, 3.0),  # first step lr * sign(g), as Adam's
    "adadelta": (1.0, 3.0, 10.0, 30.0, 100.0),  # lr multiplies steps of ~sqrt(eps) at first
    "adamax": (3e-2, 1e-1, 3e-1, 1.0, 3.0),
    "radam": (3e-2, 1e-1, 3e-1, 1.0, 3.0),
    "nadam": (3e-2, 1e-1, 3e-1, 1.0, 3.0),
    "asgd": (1e-3, 3e-3, 1e-2, 3e-2, 5e-2),  # SGD with a slowly decaying step
    "rprop": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1),  # lr is only the first step size
    "adafactor": (1e-2, 3e-2, 1e-1, 3e-1, 1.0),  # relative: steps of lr * RMS(w)
}
NET_LRS = {
    "sgd": (1e-1, 3e-1, 1.0, 3.0),
    "momentum": (1e-1, 3e-1, 1.0, 3.0),  # the EMA form's step is lr * (mean gradient)
    "rmsprop": (1e-3, 3e-3, 1e-2, 3e-2),
    "adam": (3e-3, 1e-2, 3e-2, 1e-1),
    "adamw": (3e-3, 1e-2, 3e-2, 1e-1),
    "adagrad": (3e-3, 1e-2, 3e-2, 1e-1),
    "adadelta": (1e-1, 3e-1, 1.0, 3.0),
    "adamax": (3e-3, 1e-2, 3e-2, 1e-1),
    "radam": (3e-3, 1e-2, 3e-2, 1e-1),
    "nadam": (1e-3, 3e-3, 1e-2, 3e-2),
    "asgd": (1e-1, 3e-1, 1.0, 3.0),
    "rprop": (1e-4, 3e-4, 1e-3, 3e-3),
    "adafactor": (1e-3, 3e-3, 1e-2, 3e-2),
    "muon": (3e-3, 1e-2, 3e-2, 1e-1),  # matrices only: digits-logreg/-mlp with bias=0
}

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "ravine",
            "2-D ill-conditioned quadratic 0.5(x^2 + kappa y^2); option kappa",
            _ravine_build,
            _LANDSCAPE_LRS,
            steps=300,
            target=1e-3,
            landscape=ravine(50.0),
            optimum=(0.0, 0.0),
            bounds=(-4.5, 1.5, -2.0, 2.0),
            options={"kappa": 50.0},
            accepts={"kappa": Option(float, 0.0, high=1e12), "noise": NOISE},
        ),
        Workload(
            "rosenbrock",
            "2-D Rosenbrock valley, minimum at (1, 1)",
            _landscape(rosenbrock, (-1.5, 2.0)),
            {
                **_LANDSCAPE_LRS,
                "sgd": (3e-4, 1e-3, 2e-3),
                "momentum": (3e-3, 1e-2, 2e-2),
                "rmsprop": (1e-3, 3e-3, 1e-2),
                "asgd": (3e-4, 1e-3, 2e-3),
            },
            steps=1000,
            target=1e-2,
            landscape=rosenbrock,
            optimum=(1.0, 1.0),
            bounds=(-2.0, 2.0, -1.0, 3.0),
            accepts={"noise": NOISE},
        ),
        Workload(
            "saddle",
            "2-D saddle x^2 - y^2 + y^4, started next to the saddle point",
            _landscape(saddle, (1.0, 1e-3)),
            _LANDSCAPE_LRS,
            steps=300,
            target=-0.24,
            landscape=saddle,
            optimum=(0.0, 1 / math.sqrt(2)),
            bounds=(-1.2, 1.2, -1.2, 1.2),
            accepts={"noise": NOISE},
        ),
        Workload(
            "beale",
            "2-D Beale function, minimum at (3, 0.5)",
            _landscape(beale, (1.0, 1.5)),
            {
                "sgd": (1e-3, 3e-3, 1e-2),
                "momentum": (1e-2, 3e-2, 1e-1),
                "rmsprop": (1e-3, 3e-3, 1e-2),
                "adam": (1e-2, 3e-2, 1e-1),
                "adamw": (1e-2, 3e-2, 1e-1),
                "adagrad": (3e-2, 1e-1, 3e-1),
                "adadelta": (1.0, 3.0, 10.0),
                "adamax": (1e-2, 3e-2, 1e-1),
                "radam": (1e-2, 3e-2, 1e-1),
                "nadam": (1e-2, 3e-2, 1e-1),
                "asgd": (1e-3, 3e-3, 1e-2),
                "rprop": (1e-3, 3e-3, 1e-2),
                "adafactor": (1e-2, 3e-2, 1e-1),
            },
            steps=1000,
            target=1e-2,
            landscape=beale,
            optimum=(3.0, 0.5),
            bounds=(-1.0, 4.0, -1.5, 2.0),
            accepts={"noise": NOISE},
        ),
        Workload(
            "noisy-quadratic",
            "100-D quadratic with noisy minibatch gradients (DeepOBS)",
            _noisy_quadratic,
            {
                "sgd": (3e-3, 1e-2, 3e-2),
                "momentum": (3e-2, 1e-1, 3e-1),
                "rmsprop": (1e-3, 3e-3, 1e-2),
                "adam": (1e-2, 3e-2, 1e-1),
                "adamw": (1e-2, 3e-2, 1e-1),
                "adagrad": (3e-2, 1e-1, 3e-1),
                "adadelta": (1.0, 3.0, 10.0),
                "adamax": (1e-2, 3e-2, 1e-1),
                "radam": (1e-2, 3e-2, 1e-1),
                "nadam": (1e-2, 3e-2, 1e-1),
                "asgd": (3e-3, 1e-2, 3e-2),
                "rprop": (1e-3, 3e-3, 1e-2),
                "adafactor": (1e-2, 3e-2, 1e-1),
            },
            epochs=5,
            regime="minibatch:32",
            target=None,
            accepts={"samples": Option(int, 1, inclusive=True, high=100_000)},
        ),
        Workload(
            "linreg",
            "the seed's nn.Linear(10, 1) on random data, MSE",
            _supervised(lambda: torch.nn.Linear(10, 1), _linreg_data, False),
            {
                "sgd": (3e-3, 1e-2, 3e-2),
                "momentum": (3e-2, 1e-1, 3e-1),
                "rmsprop": (1e-3, 3e-3, 1e-2),
                "adam": (1e-3, 3e-3, 1e-2),
                "adamw": (1e-3, 3e-3, 1e-2),
                "adagrad": (3e-3, 1e-2, 3e-2),
                "adadelta": (0.3, 1.0, 3.0),
                "adamax": (1e-3, 3e-3, 1e-2),
                "radam": (1e-3, 3e-3, 1e-2),
                "nadam": (1e-3, 3e-3, 1e-2),
                "asgd": (3e-3, 1e-2, 3e-2),
                "rprop": (1e-3, 3e-3, 1e-2),
                "adafactor": (1e-3, 3e-3, 1e-2),
            },
            epochs=50,
            regime="full",
        ),
        Workload(
            "digits-logreg",
            "logistic regression on scikit-learn's bundled 8x8 digits; option bias (0: none)",
            _supervised(lambda bias=True: torch.nn.Linear(64, 10, bias=bias), digits_data, True),
            NET_LRS,
            epochs=10,
            regime="minibatch:64",
            target=0.3,
            accepts={"bias": BIAS},
        ),
        Workload(
            "digits-mlp",
            "MLP 64-128-10 on scikit-learn's bundled 8x8 digits; option bias (0: none)",
            _supervised(_mlp(64, 128, 10), digits_data, True),
            NET_LRS,
            epochs=10,
            regime="minibatch:64",
            target=0.2,
            accepts={"bias": BIAS},
        ),
        Workload(
            "mnist1d-cnn",
            "small 1-D CNN on MNIST-1D (generated by the mnist1d package)",
            _supervised(CNN1D, mnist1d_data, True),
            NET_LRS,
            epochs=10,
            regime="minibatch:64",
            target=0.5,
        ),
    )
}


def get_workload(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise LabError(
            f"unknown workload {name!r}; choose one of: {', '.join(WORKLOADS)}"
        ) from None
