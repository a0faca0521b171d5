"""``descentlab`` command line.

Bad input exits with status 2 and one line naming the problem (argparse's convention).
"""

from __future__ import annotations

import argparse
import sys
import types
from typing import NoReturn

from . import __version__, optimizers


def _cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .lab import WORKLOADS

    console = Console()
    table = Table(title="optimizers")
    for column in ("name", "class", "torch.optim twin", "what it is"):
        table.add_column(column)
    for info in optimizers.REGISTRY.values():
        table.add_row(info.name, info.title, info.torch_twin or "-", info.summary)
    console.print(table)
    table = Table(title="workloads")
    for column in ("name", "default regime", "budget", "what it is"):
        table.add_column(column)
    for w in WORKLOADS.values():
        budget = f"{w.epochs:g} epochs" if w.epochs else f"{w.steps} steps"
        table.add_row(w.name, w.regime, budget, w.summary)
    console.print(table)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    import warnings

    from rich.console import Console
    from rich.table import Table

    from .lab import LabError, compare, report
    from .lab.spec import parse_lrs, parse_optimizers

    def one_line(message, category, filename, lineno, line=None):  # type: ignore[no-untyped-def]
        return f"descentlab compare: warning: {message}\n"

    warnings.formatwarning = one_line
    try:
        result = compare(
            workloads=[w for w in args.workload.split(",") if w.strip()],
            optimizers=parse_optimizers(args.optimizers),
            lrs=parse_lrs(args.lr) if args.lr is not None else None,
            seeds=args.seeds,
            regimes=(
                [r for r in args.regime.split(",") if r.strip()]
                if args.regime is not None
                else None
            ),
            epochs=args.epochs,
            steps=args.steps,
            out=args.out,
            progress=True,
        )
    except LabError as exc:
        print(f"descentlab compare: error: {exc}", file=sys.stderr)
        return 2
    from rich.markup import escape

    console = Console()
    header, cells = report.table_rows(result.summary, only_best=True)
    table = Table(title="best learning rate per optimizer (mean ± std over seeds)")
    for h in header:
        table.add_column(h, justify="left" if h in ("workload", "regime", "optimizer") else "right")
    for c in cells:
        table.add_row(*(escape(x) for x in c))
    console.print(table)
    for note in result.notes:
        console.print(escape(note))
    console.print(
        f"report: {result.files['html']}  (also {result.files['markdown'].name}, "
        f"runs.jsonl, plots/)"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.main(seed=args.seed)


def _csv(choices: list[str], what: str):  # type: ignore[no-untyped-def]
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
    )
    bench.print_report(report)
    bench.save(report, out)
    console.log(f"saved {out}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .lab import LabError
    from .reproduce import BY_KEY, reproduce

    console = Console(stderr=True)
    only = [k.strip() for k in args.only.split(",") if k.strip()] if args.only else None
    try:
        results = reproduce(
            args.out,
            quick=args.quick,
            only=only,
            seeds=args.seeds,
            progress=lambda s: console.log(escape(s)),
        )
    except LabError as exc:
        print(f"descentlab reproduce: error: {exc}", file=sys.stderr)
        return 2
    table = Table(title="the seed's claims, measured, statement by statement")
    table.add_column("claim")
    table.add_column("statement")
    table.add_column("verdict")
    colors = {"holds": "green", "does not hold": "red"}
    for key, r in results.items():
        claim = BY_KEY[key]
        for i, (st, j) in enumerate(zip(claim.statements, r["statements"], strict=True)):
            color = colors.get(j["verdict"], "yellow")
            title = escape(claim.title) if i == 0 else ""
            table.add_row(title, escape(st.text), f"[{color}]{escape(j['label'])}[/]")
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
    p = sub.add_parser("demo", help="train the seed's nn.Linear(10, 1) with every variant")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_demo)
    from .lab.compare import DEFAULT_OPTIMIZERS, DEFAULT_WORKLOADS, MAX_SEEDS

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
        default=None,
        help="comma list of learning rates for every optimizer "
        "(None: a grid of 4-5 per optimizer and workload)",
    )
    p.add_argument("--seeds", type=int, default=2, help=f"number of seeds, 1 to {MAX_SEEDS}")
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
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("reproduce", help="test every claim of the seed document, with verdicts")
    p.add_argument("--quick", action="store_true", help="the short version (about 2 minutes)")
    p.add_argument("--only", default=None, help="comma list of claim keys (default: all)")
    p.add_argument("--seeds", type=int, default=None, help="seeds (default 1 quick, 3 full)")
    p.add_argument("--out", default="descentlab-reproduce", help="report folder (resumes)")
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
        type=_csv(list(bench.TORCH), "optimizer"),
        default=None,
        help=f"comma list from {','.join(bench.TORCH)} (None: all)",
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
    p.add_argument("--out", default="bench.json", help="JSON file for the results")
    p.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda"],
        help="where the parameters live",
    )
    p.set_defaults(func=_cmd_bench)
    return parser


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
