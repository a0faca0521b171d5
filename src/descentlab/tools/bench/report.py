"""The benchmark's report: the tables printed to the terminal, and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .layouts import human
from .steps import VARIANTS


def _cases(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    cases: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in rows:
        cases.setdefault((r["layout"], r["optimizer"]), {})[r["variant"]] = r
    return cases


def print_report(report: dict[str, Any]) -> None:
    """The step-time, first-step and memory tables, the NumPy and telemetry lines."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 150)  # a file or pipe: no need to wrap
    m = report["machine"]
    cases = _cases(report["rows"])
    present = [v for v in VARIANTS if any(v in c for c in cases.values())]
    table = Table(
        title=f"step() + zero_grad() with fresh gradients, fp32, ms (median of "
        f"{report['reps']}); ours: x = torch baseline time / ours, > 1 is faster",
        caption=f"{m['cpus']} CPUs, {m['threads']} threads, torch {m['torch']}; "
        f"stream a+=s*b {report['stream_gb_per_s']:.1f} GB/s; baseline: torch fused "
        "(rmsprop: torch's fastest)",
    )
    table.add_column("layout")
    table.add_column("params", justify="right")
    table.add_column("optimizer")
    for v in present:
        table.add_column(v.replace("descentlab ", "ours "), justify="right")
    table.add_column("fastest % stream", justify="right")
    for (layout, name), c in cases.items():
        cells = []
        for v in present:
            r = c.get(v)
            if r is None:
                cells.append("-")
            elif v.startswith("torch"):
                mark = "*" if v == r["baseline"] else ""
                cells.append(f"{r['ms']:.2f}{mark}")
            else:
                color = "green" if r["ratio"] >= 1 else "red"
                cells.append(f"{r['ms']:.2f} [{color}]{r['ratio']:.2f}x[/]")
        fastest = max(c.values(), key=lambda r: r["gb_per_s"])
        pct = 100 * fastest["gb_per_s"] / report["stream_gb_per_s"]
        any_row = next(iter(c.values()))
        cells.append(f"{pct:.0f}% {fastest['variant'].split(' ', 1)[1]}")
        table.add_row(layout, human(any_row["numel"]), name, *cells)
    console.print(table)

    first = Table(title="first step (ms; where descentlab compiles, once per process)")
    first.add_column("layout")
    first.add_column("optimizer")
    for v in present:
        first.add_column(v.replace("descentlab ", "ours "), justify="right")
    for (layout, name), c in cases.items():
        first.add_row(
            layout, name, *(f"{c[v]['first_step_ms']:.0f}" if v in c else "-" for v in present)
        )
    console.print(first)
    for r in report["rows"]:
        for w in r.get("warnings", []):
            console.print(f"[yellow]warning[/] {r['layout']} {r['optimizer']} {r['variant']}: {w}")

    mem = report.get("memory")
    if mem:
        sizes = [human(m_["width"] * (m_["width"] + 1) * m_["layers"]) for m_ in mem["models"]]
        table = Table(
            title=f"peak RSS, AdamW, {mem['steps']} steps of model(x).sum().backward() on a "
            f"stack of Linear layers (a fresh process each; 1st step includes compiling)"
        )
        table.add_column("variant")
        for s in sizes:
            table.add_column(f"peak MiB @ ~{s}", justify="right")
        for col in (
            "MiB / M params",
            "bytes / param",
            "of which optimizer",
            "fixed MiB",
            "slope vs fused",
            "1st step s",
        ):
            table.add_column(col, justify="right")
        for v, e in mem["variants"].items():
            if "error" in e:
                table.add_row(v, f"[red]{e['error']}[/]")
                continue
            table.add_row(
                v,
                *(f"{x:.0f}" for x in e["peak_mib"]),
                f"{e['mib_per_m_params']:.1f}",
                f"{e['bytes_per_param']:.1f}",
                f"{e['optimizer_bytes_per_param']:.1f}",
                f"{e['fixed_mib']:.0f}",
                "-" if e["slope_vs_fused"] is None else f"{e['slope_vs_fused']:.2f}x",
                " / ".join(f"{r['first_step_s']:.1f}" for r in e["runs"]),
            )
        console.print(table)
    npy = report["numpy"]
    console.print(
        f"NumPy Adam at {npy['numel']:,} params: "
        f"seed adam_update {npy['seed adam_update ms']:.1f} ms, "
        f"descentlab reference {npy['descentlab reference ms']:.1f} ms, compiled "
        f"{npy['descentlab compiled ms']:.1f} ms ({npy['compiled speed-up vs seed']:.1f}x the seed)"
    )
    tel = report.get("telemetry")
    if tel:
        parts = [
            f"{r['optimizer']} {r['ms']:.2f} -> {r['ms_with_telemetry']:.2f} ms "
            f"({r['overhead_pct']:+.1f}%, quartiles {r['overhead_pct_quartiles'][0]:+.1f}.."
            f"{r['overhead_pct_quartiles'][1]:+.1f}%)"
            for r in tel["rows"]
        ]
        console.print(
            f"telemetry every {tel['every']} steps, AdamW on {tel['layout']}, median of "
            f"{tel['blocks']} blocks: " + "; ".join(parts)
        )
    console.print(
        f"load average before {m['loadavg_before']}, after timing {m['loadavg_after_timing']}, "
        f"after {m['loadavg_after']}"
    )


def save(report: dict[str, Any], path: Path) -> None:
    """Write ``report`` to ``path`` as JSON, atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
