"""The parameter layouts the step benchmark times: one big tensor, many small ones, and a
transformer-like mix, each shrunk by ``scale`` for quick runs."""

from __future__ import annotations

import math
from dataclasses import dataclass

BIG = 20_000_000  # elements of the single-tensor layout at scale 1
SMALL_TENSORS = 5000  # 1k-element tensors of the many-small layout at scale 1
GPT_LAYERS = 12  # blocks of the transformer-like layout at scale 1


def human(n: float) -> str:
    """``20_000_000 -> '20M'``, ``2_500 -> '2.5k'``."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:g}"


@dataclass(frozen=True)
class Layout:
    """Parameter shapes of one benchmark case; ``label`` names its actual size."""

    key: str
    label: str
    shapes: list[tuple[int, ...]]

    @property
    def numel(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    @property
    def tensors(self) -> int:
        return len(self.shapes)


# Names accepted by ``--layouts``: the keys, and the labels at scale 1.
LAYOUT_ALIASES = {
    "big": "big",
    "1 x 20m": "big",
    "many-small": "many-small",
    "5000 x 1k": "many-small",
    "gpt": "gpt",
    "gpt-like": "gpt",
    "transformer mix": "gpt",
}
LAYOUT_NAMES = ["big", "many-small", "gpt", "1 x 20M", "5000 x 1k", "transformer mix"]


def layout_key(name: str) -> str:
    """The layout key for a name given on the command line (KeyError if unknown)."""
    return LAYOUT_ALIASES[name.strip().lower()]


def layouts(scale: float = 1.0) -> dict[str, Layout]:
    """The layouts by key; ``scale`` shrinks every layout for quick runs."""
    big = max(1, int(BIG * scale))
    small = max(1, int(SMALL_TENSORS * scale))
    d, layers, vocab = 256, max(1, int(GPT_LAYERS * scale)), 5000
    mix: list[tuple[int, ...]] = [(vocab, d), (1024, d)]
    block: list[tuple[int, ...]] = [
        (d,),
        (d,),
        (3 * d, d),
        (3 * d,),
        (d, d),
        (d,),
        (d,),
        (d,),
        (4 * d, d),
        (4 * d,),
        (d, 4 * d),
        (d,),
    ]
    mix += block * layers + [(d,), (d,)]
    numel = sum(math.prod(s) for s in mix)
    return {
        "big": Layout("big", f"1 x {human(big)}", [(big,)]),
        "many-small": Layout("many-small", f"{small} x 1k", [(1000,)] * small),
        "gpt": Layout("gpt", f"GPT-like {layers}L d{d} ({human(numel)})", mix),
    }
