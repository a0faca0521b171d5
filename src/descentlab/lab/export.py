"""A sweep's results for the tools people already use: a pandas DataFrame, TensorBoard.

Both read ``runs.jsonl`` through the lab's store (a corrupt line is skipped with a warning,
every good run kept), and both are optional extras: ``pip install "descentlab[tables]"``
for pandas, ``"descentlab[tensorboard]"`` for TensorBoard's writer.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import LabError
from .store import Store

# Per-step series of a run record, and how TensorBoard names them.
SERIES = ("loss", "lr", "grad_norm", "update_norm", "time")


def _runs(folder: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(folder)
    if not (path / "runs.jsonl").is_file():
        raise LabError(f"no runs.jsonl in {str(path)!r}: run `descentlab compare --out` first")
    return Store(path).load()


def _label(spec: dict[str, Any]) -> str:
    """One readable, unique name per run: workload/optimizer/lr/regime/seed."""
    return (
        f"{spec['workload']}/{spec['optimizer']}/lr={spec['lr']:g}/{spec['regime']}"
        f"/seed={spec['seed']}"
    )


def load_runs(folder: str | Path, *, per: str = "eval") -> Any:
    """The runs of a ``compare`` folder as a pandas DataFrame.

    Args:
        folder: the ``--out`` folder of ``descentlab compare``.
        per: ``"eval"`` (default): one row per evaluation (``step``, ``train_loss`` and the
            held-out metrics); ``"step"``: one row per training step (batch ``loss``,
            ``lr``, ``grad_norm``, ``update_norm``, cumulative ``time``); ``"run"``: one
            row per run (its final evaluation, ``diverged``, ``seconds``).

    Every row carries the run's identity: ``run`` (its id), ``workload``, ``optimizer``,
    ``lr``, ``seed``, ``regime``, ``steps`` and the workload's options as ``option.<key>``.

    Example:
        >>> df = load_runs("descentlab-report")  # doctest: +SKIP
        >>> df[df.step == df.step.max()].groupby("optimizer").train_loss.mean()  # doctest: +SKIP
    """
    try:
        import pandas
    except ImportError:
        raise LabError('load_runs needs pandas: pip install "descentlab[tables]"') from None
    if per not in ("eval", "step", "run"):
        raise LabError(f"per must be one of: eval, step, run; got {per!r}")
    rows: list[dict[str, Any]] = []
    for run_id, rec in _runs(folder).items():
        spec = rec["spec"]
        ident = {
            "run": run_id,
            **{k: spec[k] for k in ("workload", "optimizer", "lr", "seed", "regime", "steps")},
            **{f"option.{k}": v for k, v in spec.get("options", {}).items()},
        }
        if per == "eval":
            rows += [{**ident, **e} for e in rec["evals"]]
        elif per == "step":
            n = len(rec["loss"])
            for i in range(n):
                row = {**ident, "step": i + 1}
                row.update({k: rec[k][i] for k in SERIES if i < len(rec.get(k, []))})
                rows.append(row)
        else:
            last = rec["evals"][-1] if rec["evals"] else {}
            rows.append({**ident, **last, "diverged": rec["diverged"], "seconds": rec["seconds"]})
    return pandas.DataFrame(rows)


def to_tensorboard(folder: str | Path, logdir: str | Path) -> list[Path]:
    """Write every run of a ``compare`` folder as a TensorBoard run under ``logdir``.

    One event-file directory per run (``<logdir>/<workload>/<optimizer>/lr=.../seed=...``):
    scalars ``train/loss`` (the batch loss), ``train/lr``, ``train/grad_norm``,
    ``train/update_norm`` and ``train/seconds`` per step, and ``eval/<metric>`` at every
    evaluation, so TensorBoard overlays the optimizers on one chart per metric. Returns the
    directories written. Non-finite values (a diverged run) are skipped, as TensorBoard
    cannot plot them.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise LabError(
            'TensorBoard export needs tensorboard: pip install "descentlab[tensorboard]"'
        ) from None
    out = Path(logdir)
    written = []
    for rec in _runs(folder).values():
        run_dir = out / _label(rec["spec"]).replace(":", "_")
        writer = SummaryWriter(log_dir=str(run_dir))
        try:
            for key in SERIES:
                name = "train/seconds" if key == "time" else f"train/{key}"
                for i, value in enumerate(rec.get(key, []), start=1):
                    if isinstance(value, float | int) and math.isfinite(value):
                        writer.add_scalar(name, value, i)
            for e in rec["evals"]:
                for metric, value in e.items():
                    if metric != "step" and math.isfinite(value):
                        writer.add_scalar(f"eval/{metric}", value, int(e["step"]))
        finally:
            writer.close()
        written.append(run_dir)
    return written
