"""``descentlab`` command line.

Bad input exits with status 2 and one line naming the problem (argparse's convention).
"""

from __future__ import annotations

import argparse
import sys

from . import __version__, optimizers


def _cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="optimizers")
    for column in ("name", "class", "torch.optim twin", "what it is"):
        table.add_column(column)
    for info in optimizers.REGISTRY.values():
        table.add_row(info.name, info.title, info.torch_twin or "-", info.summary)
    Console().print(table)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.main(seed=args.seed)


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
