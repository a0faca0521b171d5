"""Rules that are not element-wise: Adafactor (factored second moments of a matrix) and Muon
(a matrix update orthogonalized by Newton-Schulz iterations).

Their transforms reduce over the whole tensor or over axes and multiply matrices, so they
declare ``elementwise = False``: the reference engine and the NumPy API run them one tensor
at a time; the compiled and flat engines hand them to the reference (counted in
``engine_counts``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .base import Array, Coefficients, Rule, Transform, clip, ema, sqrt
from .common import DecoupledDecay, FlipSign


def _is_numpy(x: Array) -> bool:
    return isinstance(x, np.ndarray | np.generic)


def _size(x: Array) -> int:
    return x.size if _is_numpy(x) else x.numel()


def norm(x: Array, axis: int | None = None, keepdims: bool = False) -> Array:
    """The 2-norm of ``x`` (over ``axis``, or of every element)."""
    if _is_numpy(x):
        return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))
    import torch

    return torch.linalg.vector_norm(x, dim=axis, keepdim=keepdims)


def mean(x: Array, axis: int, keepdims: bool = True) -> Array:
    """The mean of ``x`` over ``axis``."""
    if _is_numpy(x):
        return np.mean(x, axis=axis, keepdims=keepdims)
    return x.mean(dim=axis, keepdim=keepdims)


def epsilon(x: Array) -> float:
    """The machine epsilon of ``x``'s dtype."""
    if _is_numpy(x):
        return float(np.finfo(x.dtype).eps)
    import torch

    return float(torch.finfo(x.dtype).eps)


@dataclass(frozen=True)
class ScaleByAdafactor(Transform):
    """Adafactor's step, torch.optim's form (Shazeer & Stern, 2018, with the relative step).

    A matrix (or a stack of them: any tensor of 2 or more dimensions) keeps the running
    means of its squared gradient's rows (``row_var``) and columns (``col_var``) instead
    of a full second moment; a vector keeps it whole (``variance``). The step is the
    gradient divided by the root of that estimate, its RMS clipped to ``d``, scaled by the
    relative step ``max(eps2, RMS(w)) * min(lr, 1 / sqrt(t))``.
    """

    slots = ("row_var", "col_var", "variance")
    elementwise = False

    def slot_shapes(self, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        if len(shape) > 1:
            return {"row_var": (*shape[:-1], 1), "col_var": (*shape[:-2], 1, shape[-1])}
        return {"variance": tuple(shape)}

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        return {
            "beta2_rate": float(step) ** hp["beta2_decay"],
            "rho": min(hp["lr"], 1 / step**0.5),
            "eps1": hp.get("eps1", math.nan),  # NaN: the compute dtype's epsilon
            "eps2": hp["eps2"],
            "d": hp["d"],
        }

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        eps1 = c["eps1"] if not math.isnan(c["eps1"]) else epsilon(u)
        # (an empty tensor has nothing to step: its sizes count as 1, where torch divides by 0)
        alpha = max(c["eps2"], float(norm(p)) / max(_size(p), 1) ** 0.5) * c["rho"]
        new: dict[str, Array] = {}
        if u.ndim > 1:
            row = ema(state["row_var"], norm(u, -1, True) ** 2 / u.shape[-1], c["beta2_rate"])
            col = ema(state["col_var"], norm(u, -2, True) ** 2 / u.shape[-2], c["beta2_rate"])
            var = (row @ col) / clip(mean(row, -2), eps1, None)
            new = {"row_var": row, "col_var": col}
        else:
            var = new["variance"] = ema(state["variance"], u * u, c["beta2_rate"])
        update = u / sqrt(clip(var, eps1 * eps1, None))
        denom = max(1.0, float(norm(update)) / (max(_size(update), 1) ** 0.5 * c["d"]))
        return update * (-alpha / denom), new


def adafactor(*, weight_decay: bool = False, maximize: bool = False) -> Rule:
    """Adafactor as torch.optim writes it: factored second moments, relative step size.

    ::

        beta2_t = 1 - t**beta2_decay;   rho_t = min(lr, 1 / sqrt(t))
        alpha_t = max(eps2, RMS(w_{t-1})) * rho_t
        matrices:  R_t = beta2_t R_{t-1} + (1 - beta2_t) mean_cols(g**2)      (row_var)
                   C_t = beta2_t C_{t-1} + (1 - beta2_t) mean_rows(g**2)      (col_var)
                   V = R_t C_t / max(mean(R_t), eps1)
        vectors:   V = beta2_t V_{t-1} + (1 - beta2_t) g**2                   (variance)
        U = g / sqrt(max(V, eps1**2))
        w_t = w_{t-1} - alpha_t / max(1, RMS(U) / d) * U - lr * weight_decay * w_{t-1}

    **Conventions**: torch's: no first moment, ``beta2_decay = -0.8``, ``eps = (None,
    1e-3)`` with ``None`` meaning the machine epsilon of the dtype the step is computed in
    (the parameter's; float32 for 16-bit parameters, which descentlab computes in float32),
    weight decay decoupled and multiplied by ``lr``. Equals ``torch.optim.Adafactor`` to
    float64 round-off.

    Hyperparameters read each step: ``lr``, ``beta2_decay``, ``eps1``, ``eps2``, ``d``,
    ``weight_decay``.

    Example (a vector's first step: ``U = sign(g)``, and ``w = 0`` gives ``alpha = eps2 *
    lr``):
        >>> import numpy as np
        >>> rule = adafactor()
        >>> hp = dict(lr=0.01, beta2_decay=-0.8, eps1=1e-30, eps2=1e-3, d=1.0)
        >>> w, s = rule.step(np.zeros(2), np.array([3.0, -0.5]), rule.init(np.zeros(2)),
        ...                  step=1, **hp)
        >>> np.round(w, 12).tolist(), s["variance"].tolist()
        ([-1e-05, 1e-05], [9.0, 0.25])
    """
    head: tuple[Transform, ...] = (FlipSign(),) if maximize else ()
    tail: tuple[Transform, ...] = (DecoupledDecay(),) if weight_decay else ()
    return Rule("adafactor", (*head, ScaleByAdafactor(), *tail))


def bfloat16(x: Array) -> Array:
    """``x`` rounded to bfloat16: a bfloat16 tensor, or for NumPy (which has no bfloat16)
    float32 values rounded to the nearest bfloat16 (ties to even), as torch rounds."""
    if not _is_numpy(x):
        import torch

        return x.to(torch.bfloat16)
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(
        0xFFFF0000
    )
    rounded = np.where(np.isnan(x), bits, rounded).astype(np.uint32)
    return rounded.view(np.float32).reshape(np.shape(x))


def newton_schulz(
    g: Array, coefficients: tuple[float, float, float], steps: int, eps: float
) -> Array:
    """The orthogonalized direction of a matrix ``g``: ``steps`` quintic Newton-Schulz
    iterations in bfloat16 (torch.optim.Muon's ``_zeropower_via_newtonschulz``).

    ``X <- a X + (b A + c A A) X`` with ``A = X X^T``, from ``X = g / max(||g||, eps)``, on
    the wide orientation of ``g``. With NumPy each operation is computed in float32 and
    rounded to bfloat16, which agrees with torch to a few bfloat16 roundings.
    """
    a, b, c = coefficients
    x = bfloat16(g)
    tall = g.shape[0] > g.shape[1]
    if tall:
        x = x.T
    if _is_numpy(x):  # torch: x.div_(x.norm().clamp(min=eps)), all in bfloat16
        x = bfloat16(x / bfloat16(np.maximum(bfloat16(norm(x)), np.float32(eps))))
    else:
        x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        if _is_numpy(x):
            gram = bfloat16(x @ x.T)
            update = bfloat16(b * gram + c * (gram @ gram))
            x = bfloat16(a * x + update @ x)
        else:
            import torch

            gram = x @ x.T
            update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
            x = torch.addmm(x, update, x, beta=a)
    return x.T if tall else x


@dataclass(frozen=True)
class ScaleByMuon(Transform):
    """Muon's step: EMA momentum (Nesterov by default), orthogonalized, scaled by the shape
    rule of ``adjust_lr_fn``: ``u = -lr * ratio * NS(b)``."""

    nesterov: bool = True
    ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315)
    ns_steps: int = 5
    adjust_lr_fn: str | None = None
    slots = ("momentum_buffer",)
    elementwise = False

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        return {
            "lr": hp["lr"],
            "momentum": hp["momentum"],
            "ema_rate": 1.0 - hp["momentum"],
            "ns_eps": hp["eps"],
        }

    def ratio(self, shape: tuple[int, ...]) -> float:
        """The learning-rate multiplier of a matrix of ``shape`` (torch's ``_adjust_lr``)."""
        rows, cols = shape[:2]
        if self.adjust_lr_fn in (None, "original"):
            return math.sqrt(max(1, rows / cols))
        if self.adjust_lr_fn == "match_rms_adamw":
            return 0.2 * math.sqrt(max(rows, cols))
        return 1.0

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        if u.ndim != 2:
            raise ValueError("Muon's rule takes 2-D parameters (matrices) only")
        buf = ema(state["momentum_buffer"], u, c["ema_rate"])
        direction = ema(u, buf, c["momentum"]) if self.nesterov else buf
        ortho = newton_schulz(direction, self.ns_coefficients, self.ns_steps, c["ns_eps"])
        ortho = ortho.astype(p.dtype) if _is_numpy(p) else ortho.to(p.dtype)
        return ortho * (-c["lr"] * self.ratio(tuple(p.shape))), {"momentum_buffer": buf}


def muon(
    *,
    nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
    weight_decay: bool = True,
) -> Rule:
    """Muon (Jordan et al., 2024), torch.optim's form, for 2-D parameters (matrices).

    ::

        B_t = momentum * B_{t-1} + (1 - momentum) * g_t           (an EMA; B_0 = 0)
        D_t = g_t + momentum * (B_t - g_t)   (nesterov)   or   B_t
        O_t = NS(D_t): Newton-Schulz orthogonalization, ns_steps quintic iterations in bf16
        w_t = w_{t-1} - lr * weight_decay * w_{t-1} - lr * ratio(shape) * O_t

    ``ratio`` is ``sqrt(max(1, rows / cols))`` ("original", Keller Jordan's) or
    ``0.2 * sqrt(max(rows, cols))`` ("match_rms_adamw", Moonshot's: AdamW's lr and weight
    decay carry over).

    **Conventions**: torch's (EMA momentum where Keller Jordan's reference keeps a sum,
    decoupled weight decay by default 0.1, iterations in bfloat16). Equals
    ``torch.optim.Muon`` exactly on the same hardware with the torch drop-in (same bfloat16
    operations); the NumPy API emulates bfloat16 rounding in float32 and agrees to a few
    bfloat16 roundings.

    Hyperparameters read each step: ``lr``, ``momentum``, ``eps``, ``weight_decay``; the
    structure: ``nesterov``, ``ns_coefficients``, ``ns_steps``, ``adjust_lr_fn``.
    """
    core = ScaleByMuon(
        nesterov=nesterov,
        ns_coefficients=tuple(ns_coefficients),  # type: ignore[arg-type]
        ns_steps=ns_steps,
        adjust_lr_fn=adjust_lr_fn,
    )
    return Rule("muon", (core, *((DecoupledDecay(),) if weight_decay else ())))


__all__ = [
    "ScaleByAdafactor",
    "ScaleByMuon",
    "adafactor",
    "bfloat16",
    "muon",
    "newton_schulz",
]
