"""``descentlab`` command line.

Bad input exits with status 2 and one line naming the problem (argparse's convention).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import types
import warnings
from collections.abc import Iterator
from typing import Any, NoReturn

from .. import __version__, optimizers

TORCH_OWN = {
    "LBFGS": "a closure-driven quasi-Newton method, not an update rule",
    "SparseAdam": "Adam for sparse gradients (nn.Embedding(sparse=True))",
}
"""Classes ``descentlab.torch`` re-exports from torch.optim as they are (not descentlab rules)."""


def _cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..lab import WORKLOADS

    console = Console()
    table = Table(title="optimizers")
    for column in ("name", "class", "torch.optim twin", "what it is"):
        table.add_column(column)
    for info in optimizers.REGISTRY.values():
        table.add_row(info.name, info.title, info.torch_twin or "-", info.summary)
    for title, what in TORCH_OWN.items():
        table.add_row("-", title, f"torch.optim.{title}", f"torch's own class, re-exported: {what}")
    console.print(table)
    table = Table(title="workloads")
    for column in ("name", "default regime", "budget", "what it is"):
        table.add_column(column)
    for w in WORKLOADS.values():
        budget = f"{w.epochs:g} epochs" if w.epochs else f"{w.steps} steps"
        table.add_row(w.name, w.regime, budget, w.summary)
    console.print(table)
    return 0


@contextlib.contextmanager
def _warnings_as_lines(prog: str) -> Iterator[None]:
    """While a command runs, its warnings print as one line under the command's name (no
    file and line of library code); the process's own warning settings come back after."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {message}", file=file if file is not None else sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _cmd_compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..lab import LabError, compare
    from ..lab.executors import InProcessExecutor, executor_from
    from ..lab.spec import parse_lrs, parse_optimizers

    stack = contextlib.ExitStack()  # the executor's workers or Ray cluster, closed at the end
    stack.enter_context(_warnings_as_lines("descentlab compare"))
    try:
        if args.tensorboard is not None:
            _check_tensorboard(args.tensorboard)  # before any run: a missing extra fails fast
        executor = stack.enter_context(executor_from(args.executor, args.jobs, args.address))
        if args.no_vectorize and isinstance(executor, InProcessExecutor):
            executor.vectorize = False
        result = compare(
            workloads=[w for w in args.workload.split(",") if w.strip()],
            optimizers=parse_optimizers(args.optimizers),
            lrs=args.lr.strip() if args.lr.strip() in ("auto", "grid") else parse_lrs(args.lr),
            seeds=args.seeds,
            regimes=(
                [r for r in args.regime.split(",") if r.strip()]
                if args.regime is not None
                else None
            ),
            epochs=args.epochs,
            steps=args.steps,
            out=args.out,
            progress=None,  # on stderr when it is a terminal
            executor=executor,
        )
    except LabError as exc:
        print(f"descentlab compare: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a folder removed under it: one line, no traceback
        print(f"descentlab compare: error: {_os_error(exc)}", file=sys.stderr)
        return 1
    finally:
        stack.close()
    from rich.markup import escape

    console = Console()
    print_summary(console, result.summary)
    for note in result.notes:
        style = "bold yellow" if note.startswith("Warning:") else None
        console.print(escape(note), style=style)
    console.print(
        f"report: {result.files['html']}  (also {result.files['markdown'].name}, "
        f"runs.jsonl, plots/)"
    )
    if args.tensorboard is not None:
        from ..lab import to_tensorboard

        written = to_tensorboard(result.folder, args.tensorboard)
        console.print(
            f"tensorboard: {len(written)} runs in {args.tensorboard}  "
            f"(tensorboard --logdir {args.tensorboard})"
        )
    return 0


def _os_error(exc: OSError) -> str:
    """One line for a failure of the machine (not of the input): what, where, and that the
    results written so far are kept (every file is written whole, so a rerun resumes)."""
    where = f" ({exc.filename})" if exc.filename else ""
    what = exc.strerror or str(exc)
    return f"{what}{where}; the results written so far are kept: run again to resume"


def _check_tensorboard(logdir: str) -> None:
    """The TensorBoard export can run: the extra is installed and ``logdir`` is writable."""
    import importlib.util
    import os
    from pathlib import Path

    from ..lab import LabError

    if importlib.util.find_spec("tensorboard") is None:
        raise LabError('--tensorboard needs tensorboard: pip install "descentlab[tensorboard]"')
    path = Path(logdir)
    parent = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise LabError(f"--tensorboard: cannot write to {logdir!r}")


def print_summary(console: Any, summary: list[dict[str, Any]]) -> None:
    """Each optimizer at its best lr, per workload and regime, readable at any width.

    A table when it fits the console (optimizer labels whole, numbers wrapping between
    words); otherwise one paragraph per optimizer, its label first, that the console wraps.
    """
    from rich import box
    from rich.markup import escape
    from rich.padding import Padding
    from rich.table import Table

    from ..lab import report

    header, cells = report.table_rows(summary, only_best=True)
    groups: dict[tuple[str, str], list[list[str]]] = {}
    for c in cells:
        groups.setdefault((c[0], c[1]), []).append(c[2:])
    for (workload, regime), rows in groups.items():
        keep = [0] + [k for k in range(1, len(header) - 2) if any(r[k] != "-" for r in rows)]
        names = [header[2 + k] for k in keep]  # without columns empty here (no test set)
        rows = [[r[k] for k in keep] for r in rows]
        seeds = max(
            (s["seeds"] for s in summary if s["workload"] == workload and s["regime"] == regime),
            default=1,
        )
        title = escape(
            f"{workload} [{regime}]: best learning rate per optimizer "
            f"(mean ± std over {seeds} seed(s))"
        )
        texts = [[name, *(r[k] for r in rows)] for k, name in enumerate(names)]
        widths = [max(len(t) for t in texts[0])]  # the optimizer label: whole
        widths += [max(len(w) for t in col for w in t.split()) for col in texts[1:]]
        widest = [max(w, *(len(t) for t in col[1:])) for w, col in zip(widths, texts, strict=True)]
        spare = console.width - 2 * (len(names) - 1) - sum(widths)  # 2: padding, border
        while spare > 0 and any(w < m for w, m in zip(widths, widest, strict=True)):
            k = max(range(len(widths)), key=lambda k: widest[k] - widths[k])
            widths[k] += 1  # the column that would wrap most gets the room first
            spare -= 1
        table = Table(
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
            collapse_padding=True,
            pad_edge=False,
            show_edge=False,
        )
        for k, name in enumerate(names):  # the label is never cut nor wrapped, numbers wrap
            table.add_column(  # between words only
                name, justify="left" if k == 0 else "right", no_wrap=k == 0, width=widths[k]
            )
        for r in rows:
            table.add_row(*(escape(x) for x in r))
        console.print(title, style="bold")
        if spare >= 0:
            console.print(table)
            continue
        for r in rows:  # too narrow for a table: the label, then its numbers indented
            pairs = "; ".join(f"{n} {x}" for n, x in zip(names[1:], r[1:], strict=True))
            console.print(escape(r[0]) + ":")
            console.print(Padding(escape(pairs), (0, 0, 0, 4)))
        console.print()


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.main(seed=args.seed)


def _csv(choices: list[str], what: str):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {bad[0] if bad else text!r}; choose from: {', '.join(choices)}"
            )
        return items

    return parse


def _cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from . import bench

    console = Console(stderr=True)
    out = Path(args.out)
    try:
        bench.check_args(args.scale, args.reps, args.warmup, args.memory_jobs)
        bench.check_out(out)
    except ValueError as exc:
        print(f"descentlab bench: error: {exc}", file=sys.stderr)
        return 2
    if args.device != "cpu":
        import torch

        if not torch.cuda.is_available():
            print(
                f"descentlab bench: error: --device {args.device}: no CUDA device here; use cpu",
                file=sys.stderr,
            )
            return 2
    report = bench.run(
        args.optimizers,
        args.layouts,
        scale=args.scale,
        reps=args.reps,
        progress=lambda s: console.log(f"timing {s}"),
        device=args.device,
        warmup=args.warmup,
        measure_memory=not args.no_memory,
        memory_jobs=args.memory_jobs,
        compile_step=args.compile_step,
    )
    bench.print_report(report)
    bench.save(report, out)
    console.log(f"saved {out}")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from ..explain import explain
    from ..lab import LabError

    started = time.perf_counter()
    try:
        page = explain(args.out, claims=args.claims)
    except LabError as exc:
        print(f"descentlab explain: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"descentlab explain: error: {_os_error(exc)}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in page.parent.iterdir() if p.is_file())
    print(
        f"wrote {page} ({size / 1e6:.1f} MB with plotly.min.js, "
        f"{time.perf_counter() - started:.1f} s): open it in a browser, no network needed"
    )
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..lab import LabError
    from ..reproduce import BY_KEY, reproduce
    from ..reproduce.document import effect_text

    console = Console(stderr=True)
    only = [k.strip() for k in args.only.split(",") if k.strip()] if args.only is not None else None
    try:
        results = reproduce(
            args.out,
            quick=args.quick,
            only=only,
            seeds=args.seeds,
            progress=lambda s: console.log(escape(s)),
            jobs=args.jobs if args.jobs is not None else (os.cpu_count() or 1),
        )
    except LabError as exc:
        print(f"descentlab reproduce: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"descentlab reproduce: error: {_os_error(exc)}", file=sys.stderr)
        return 1
    table = Table(title="the seed's claims, measured, statement by statement")
    table.add_column("claim")
    table.add_column("statement")
    table.add_column("verdict")
    table.add_column("effect [95% interval]")
    colors = {"holds": "green", "exact, by construction": "green", "does not hold": "red"}
    for key, r in results.items():
        claim = BY_KEY[key]
        for i, (st, j) in enumerate(zip(claim.statements, r["statements"], strict=True)):
            color = colors.get(j["verdict"], "yellow")
            title = escape(claim.title) if i == 0 else ""
            label = f"[{color}]{escape(j['label'])}[/]"
            table.add_row(title, escape(st.text), label, escape(effect_text(j)))
    Console().print(table)
    Console().print(f"report: {args.out}/index.html (and report.md)")
    return 0


def _one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``parser`` report bad arguments in one line (no usage block), status 2."""

    def error(self: argparse.ArgumentParser, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")

    parser.error = types.MethodType(error, parser)  # type: ignore[method-assign]
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="descentlab",
        description="The gradient-descent family, each rule written once.",
    )
    parser.add_argument("--version", action="version", version=f"descentlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("list", help="list the optimizers")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser(
        "check",
        help="run a training script with every optimizer guarded against the seed's pitfalls",
        description="descentlab check -- python train.py [args]: runs the command unchanged, "
        "with descentlab.guard attached to every optimizer it creates; prints the findings at "
        "the end and exits with the command's exit code.",
    )
    p.add_argument(
        "--finetuning",
        action="store_true",
        help="the script adapts trained weights: treat every weight tensor as learned (without "
        "it, only those with evidence: loaded from a checkpoint, or trained by an earlier "
        "optimizer of the script)",
    )
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    p.set_defaults(func=_cmd_check)
    p = sub.add_parser("demo", help="train the seed's nn.Linear(10, 1) with every variant")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_demo)
    from ..lab.compare import DEFAULT_OPTIMIZERS, DEFAULT_WORKLOADS, MAX_SEEDS

    defaults = argparse.ArgumentDefaultsHelpFormatter
    p = _one_line_errors(
        sub.add_parser(
            "compare",
            help="train optimizers side by side and write a report",
            formatter_class=defaults,
        )
    )
    p.add_argument(
        "--workload",
        default=",".join(DEFAULT_WORKLOADS),
        help="workload(s), comma separated, options after colons "
        "(e.g. ravine:kappa=100:noise=0.5); see `descentlab list`",
    )
    p.add_argument(
        "--optimizers",
        default=",".join(DEFAULT_OPTIMIZERS),
        help="comma list of name[:key=value...], e.g. adam,sgd:momentum=0.9 or adam:betas=0.9/0.99",
    )
    p.add_argument(
        "--lr",
        default="auto",
        help="auto (default: an lr range test places 7 lrs per optimizer and workload, "
        "widened where the best is at an edge), grid (each workload's fixed 4-5), or a comma "
        "list of learning rates for every optimizer",
    )
    p.add_argument("--seeds", type=int, default=3, help=f"number of seeds, 1 to {MAX_SEEDS}")
    p.add_argument(
        "--regime",
        default=None,
        help="comma list from full, sgd, minibatch:B (None: per workload)",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="budget in epochs, equal across regimes (None: per workload)",
    )
    budget.add_argument(
        "--steps", type=int, default=None, help="a fixed number of steps instead of --epochs"
    )
    p.add_argument("--out", default="descentlab-report", help="report folder (resumes)")
    p.add_argument(
        "--tensorboard",
        metavar="DIR",
        default=None,
        help='also write every run to TensorBoard event files in DIR (extra "tensorboard")',
    )
    p.add_argument(
        "--executor",
        default="inprocess",
        help="where runs are trained: inprocess (default: here, the lrs and seeds of each "
        "optimizer on a built-in workload together as one batched problem, other runs one at a "
        'time), pool (worker processes on this machine) or ray (a Ray cluster; extra "ray")',
    )
    p.add_argument(
        "--no-vectorize",
        action="store_true",
        help="with --executor inprocess, train one run at a time (no batches)",
    )
    p.add_argument(
        "--jobs", type=int, default=None, help="runs at once for pool or ray (default: every CPU)"
    )
    p.add_argument(
        "--address",
        default=None,
        help='Ray cluster to join: "auto", host:port or ray://host:port (default: start a local '
        "one)",
    )
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser(
        "explain",
        help="write the seed as an interactive page: sliders, paths and curves computed by "
        "the rules",
    )
    p.add_argument("--out", default="descentlab-explain", help="folder for index.html")
    p.add_argument(
        "--claims",
        default=None,
        help="a descentlab reproduce folder whose verdicts to show beside the text (default: "
        "descentlab-reproduce, if it holds one)",
    )
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser("reproduce", help="test every claim of the seed document, with verdicts")
    p.add_argument("--quick", action="store_true", help="the short version (under a minute)")
    p.add_argument("--only", default=None, help="comma list of claim keys (default: all)")
    p.add_argument("--seeds", type=int, default=None, help="seeds (default 1 quick, 3 full)")
    p.add_argument("--out", default="descentlab-reproduce", help="report folder (resumes)")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="claims measured at once, each in its own process on one thread (default: one "
        "per CPU; 1: one after another in this process)",
    )
    p.set_defaults(func=_cmd_reproduce)

    from . import bench

    p = _one_line_errors(
        sub.add_parser(
            "bench",
            help="time step() + zero_grad() with fresh gradients against torch.optim (ratios), "
            "and peak memory per variant",
            formatter_class=defaults,
        )
    )
    p.add_argument(
        "--optimizers",
        type=_csv([*bench.TORCH, *bench.ALIASES], "optimizer"),
        default=None,
        help=f"comma list from {','.join(bench.TORCH)} (None: {','.join(bench.DEFAULT)})",
    )
    p.add_argument(
        "--layouts",
        type=_csv(bench.LAYOUT_NAMES, "layout"),
        default=None,
        help="comma list from big (1 x 20M), many-small (5000 x 1k), gpt (transformer mix); "
        "None: all",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="shrink every layout and the memory models by this factor (0 < scale <= 10) "
        "for a quick run",
    )
    p.add_argument("--reps", type=int, default=15, help="timed steps per variant (>= 1)")
    p.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="untimed steps per variant after the first (compiling) one (>= 0)",
    )
    p.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-memory measurement (CPU only: a process per variant and size, "
        "20M and 60M parameters times --scale)",
    )
    p.add_argument(
        "--memory-jobs",
        type=int,
        default=2,
        help="memory-measuring processes run at once (>= 1)",
    )
    p.add_argument(
        "--compile-step",
        action="store_true",
        help="also time torch.optim's and descentlab's default under the user's own "
        "torch.compile(opt.step) (each compiles at its first step: minutes on a CPU)",
    )
    p.add_argument("--out", default="bench.json", help="JSON file for the results")
    p.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda"],
        help="where the parameters live",
    )
    p.set_defaults(func=_cmd_bench)
    return parser


def _cmd_check(args: argparse.Namespace) -> int:
    from ..diagnostics import check

    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    try:
        return check.run(command, finetuning=args.finetuning)
    except ValueError as exc:
        print(f"descentlab check: error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("descentlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
