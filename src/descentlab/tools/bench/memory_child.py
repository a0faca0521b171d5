"""One memory process of ``descentlab bench``: the user's program and nothing else.

Run as a file (see ``memory.RUN_FILE``) with one argument, the JSON spec (variant, width,
layers, batch, steps); prints one JSON line. The torch.optim variant does not import
descentlab, so its figures are torch's alone. Nothing here runs on import.
"""

import json
import resource
import sys
import time
from typing import Any

import torch


def peak_mib() -> float:
    """Peak resident size of this process, MiB (``ru_maxrss``: bytes on macOS, KiB else)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 2**20 if sys.platform == "darwin" else kib / 2**10


def proc_mib(field: str) -> float | None:
    """Linux: VmHWM (peak) or VmRSS (now) of this process image, MiB; None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        return None
    return None


def main(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the model, take the steps, and return the figures."""
    if spec["variant"] != "torch fused":
        import descentlab.torch
    out_import = peak_mib()  # the interpreter, torch (and descentlab)
    torch.manual_seed(0)
    d = spec["width"]
    model = torch.nn.Sequential(*[torch.nn.Linear(d, d) for _ in range(spec["layers"])])
    x = torch.randn(spec["batch"], d)
    out: dict[str, Any] = {
        "numel": sum(p.numel() for p in model.parameters()),
        "tensors": len(list(model.parameters())),
    }
    model(x).sum().backward()
    model.zero_grad()
    out["peak_import_mib"] = out_import
    out["peak_model_mib"] = peak_mib()  # model + one backward's gradients, no optimizer
    variant = spec["variant"]
    opt: torch.optim.Optimizer
    if variant == "torch fused":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    elif variant == "descentlab auto":
        opt = descentlab.torch.AdamW(model.parameters(), lr=1e-4)
    else:
        opt = descentlab.torch.AdamW(model.parameters(), lr=1e-4, engine="flat")
    times = []
    for _ in range(spec["steps"]):
        t = time.perf_counter()
        model(x).sum().backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t)
    out["peak_mib"] = peak_mib()
    out["vmhwm_mib"] = proc_mib("VmHWM")  # cross-check of peak_mib
    out["rss_end_mib"] = proc_mib("VmRSS")
    out["first_step_s"] = times[0]
    out["last_step_s"] = times[-1]
    out["engine_counts"] = getattr(opt, "engine_counts", None)
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
