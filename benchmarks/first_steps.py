"""The first steps from the user's side: a short training script in fresh processes.

A 100-step script (a GPT-like stack of 74 parameter tensors, 1.45M parameters, AdamW, a
forward and backward pass per step) is run in a new Python process for each variant, with
``import torch.optim as optim`` or ``import descentlab.torch as optim``, the compiler cache
empty (a new ``TORCHINDUCTOR_CACHE_DIR``) or left by an earlier run. Reported per run: the
wall time of the whole process (Python start and imports included), the first step, the
longest step, and how many parameter updates each engine did. ``--long SECONDS`` adds runs of up
to that long, each ended 50 steps after the default engine switched to the kernel compiled
in the background: the first compiles from its first step (``DESCENTLAB_COMPILE_AFTER=0``),
the second, with the defaults, finds the kernel file the first one left; once for the
training loop, which keeps the cores busy, and once for the optimizer alone with the CPU
idle for 10 ms per step, as a loop that waits for data or for a GPU leaves it. Each
reports when it switched and its longest step. Variants alternate, so machine load drifts
hit them alike. Never collected by pytest.

Run: python benchmarks/first_steps.py [--reps 3] [--steps 100] [--long 90] [--before]
     [--out first_steps.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_CHILD = r"""
import json, os, sys, time
started = time.perf_counter()
import torch
if sys.argv[1] == "torch":
    import torch.optim as optim
else:
    import descentlab.torch as optim
steps, seconds, idle = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
torch.manual_seed(0)
d, heads, blocks, vocab, seq = 128, 4, 6, 2048, 64


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.qkv, self.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
        self.fc1, self.fc2 = torch.nn.Linear(d, 4 * d), torch.nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, heads, d // heads).unbind(2)
        y = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x))))


class GPT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Parameter(torch.zeros(seq, d))
        self.blocks = torch.nn.Sequential(*[Block() for _ in range(blocks)])

    def forward(self, idx):
        x = self.blocks(self.tok(idx) + self.pos)
        return x @ self.tok.weight.t()  # tied head


model = GPT()
opt = optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
data = torch.randint(0, vocab, (16, seq + 1))
times, switched, iterations = [], None, []
i = 0
while i < steps or (seconds > 0 and time.perf_counter() - started < seconds):
    began = time.perf_counter()
    opt.zero_grad()
    if idle > 0:  # the optimizer alone, then the CPU left idle (data loading, a GPU's work)
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        time.sleep(idle)
    else:
        logits = model(data[:, :-1])
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, vocab), data[:, 1:].reshape(-1)
        )
        loss.backward()
    t = time.perf_counter()
    opt.step()
    times.append(time.perf_counter() - t)
    iterations.append(time.perf_counter() - began)
    i += 1
    counts = getattr(opt, "engine_counts", {})
    if switched is None and counts.get("compiled", 0):
        switched = [i, time.perf_counter() - started]
    if seconds > 0 and switched and i > switched[0] + 50:
        break
print("RESULT " + json.dumps({
    "in_process": time.perf_counter() - started,
    "first": times[0],
    "longest": max(times),
    "longest_at": times.index(max(times)) + 1,
    "longest_iteration": max(iterations),
    "steps": len(times),
    "switched": switched,
    "counts": dict(getattr(opt, "engine_counts", {})),
    "tensors": len(list(model.parameters())),
    "numel": sum(p.numel() for p in model.parameters()),
}))
"""


def run(
    front: str, cache: Path, steps: int, seconds: float = 0.0, idle: float = 0.0, **env: str
) -> dict[str, Any]:
    environ = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), **env}
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, front, str(steps), str(seconds), str(idle)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=1800,
    )
    wall = time.perf_counter() - start
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{front} run failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    result["wall"] = wall
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--long", type=float, default=0.0, help="seconds of the long runs")
    parser.add_argument(
        "--before", action="store_true", help='also engine="compiled" (compiles at step 1)'
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="descentlab-first-steps-") as tmp:
        root = Path(tmp)
        for rep in range(args.reps):
            rows.append(("torch.optim", run("torch", root / f"t{rep}", args.steps)))
            rows.append(("descentlab, empty cache", run("ours", root / f"d{rep}", args.steps)))
        if args.before:
            warm = root / "before"
            for label in ("empty cache", "warm cache"):
                rows.append(
                    (
                        f'engine="compiled", {label}',
                        run("ours", warm, args.steps, DESCENTLAB_ENGINE="compiled"),
                    )
                )
        if args.long > 0:
            shared = root / "long"
            shared, n = root / "long", f"{args.long:g}"
            plan = [  # (what, loop's idle seconds, cache, environment)
                ("optimizer + 10 ms idle, empty cache, COMPILE_AFTER=0", 0.01, shared, "0"),
                ("optimizer + 10 ms idle, the kernel file left, defaults", 0.01, shared, None),
                ("training, the kernel file left, defaults", 0.0, shared, None),
                ("training, empty cache, COMPILE_AFTER=0", 0.0, root / "busy", "0"),
            ]
            for what, idle, cache, after in plan:
                env = {} if after is None else {"DESCENTLAB_COMPILE_AFTER": after}
                rows.append(
                    (
                        f"descentlab, {what}, up to {n} s",
                        run("ours", cache, 0, args.long, idle, **env),
                    )
                )
            for _ in range(args.reps):  # the short script again, kernel files in the cache
                rows.append(
                    ("descentlab, kernel files in the cache", run("ours", shared, args.steps))
                )
    print(
        "| run | process wall s | first step s | longest step s (at) | longest iteration s "
        "| switched (step, s) |"
    )
    print("|---|---|---|---|---|---|")
    for label, r in rows:
        sw = f"{r['switched'][0]}, {r['switched'][1]:.1f}" if r["switched"] else "no"
        print(
            f"| {label} | {r['wall']:.2f} | {r['first']:.3f} | "
            f"{r['longest']:.3f} ({r['longest_at']}) | {r['longest_iteration']:.3f} | {sw} |"
        )
    torch_walls = [r["wall"] for label, r in rows if label == "torch.optim"]
    ours_walls = [r["wall"] for label, r in rows if label == "descentlab, empty cache"]
    if torch_walls and ours_walls:
        ratio = sum(ours_walls) / sum(torch_walls)
        n = len(ours_walls)
        print(f"\ndescentlab / torch.optim, process wall time over {n} runs each: {ratio:.2f}x")
    if args.out:
        args.out.write_text(json.dumps([{"run": label, **r} for label, r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
