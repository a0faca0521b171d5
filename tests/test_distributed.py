"""Distributed training: descentlab's drop-ins (default engine) behave exactly like torch.optim.

Two processes (gloo, CPU) run the loop users write (``zero_grad``, ``backward``, ``step``)
under the three setups users run, each rank on its own data:

* ``DistributedDataParallel`` with ``AdamW``, on a small model (< 16 tensors: the reference
  engine) and on a deep one (>= 16 tensors: ``engine="auto"`` picks the eager engine, which
  compiles only once a run has lasted long enough to pay for it);
* ``ZeroRedundancyOptimizer(..., optimizer_class=AdamW, parameters_as_bucket_view=True)``
  over DDP: ZeRO re-homes every parameter into its own buckets AFTER the local optimizer
  was built, and each rank steps only its shard before broadcasting it;
* FSDP2 ``fully_shard``: parameters and gradients are DTensor shards (uneven ones too).

The same script runs once with ``torch.optim.AdamW`` and once with ``descentlab.torch.AdamW``.
After training, every rank gathers its full parameters; the parent test checks that the two
ranks agree bit for bit and that descentlab equals torch.optim to round-off (float64), and
which engine executed the updates (``engine_counts``).

All setups run in ONE pair of processes.
"""

from __future__ import annotations

import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch

import descentlab
from helpers import rel_err

pytestmark = pytest.mark.slow

WORLD = 2
STEPS = 6
HP: dict[str, Any] = {"lr": 1e-2, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.01}
TOL = 1e-10  # float64: descentlab vs torch.optim, normwise relative
TIMEOUT = 300  # seconds for the whole 2-process run (cold torch.compile included)
SETUPS = ("ddp_small", "ddp", "zero", "fsdp2")
NAMES = ("torch", "descentlab")
DEEP = 20  # Linear layers of the deep model: 40 tensors, about 20 per ZeRO shard
SMALL = 3  # Linear layers of the small model: 6 tensors


# ----------------------------------------------------------------------------- the ranks
def _model(layers: int) -> torch.nn.Sequential:
    """Same initial values on every rank (ZeRO and FSDP2 rely on it, as DDP's users do)."""
    torch.manual_seed(0)
    widths = [6] + [9 + (5 * i) % 8 for i in range(layers - 1)] + [3]  # odd sizes: uneven shards
    mods: list[torch.nn.Module] = []
    for i in range(layers):
        mods += [torch.nn.Linear(widths[i], widths[i + 1]), torch.nn.Tanh()]
    return torch.nn.Sequential(*mods[:-1]).double()


def _batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 * (rank + 1) + step)  # different data per rank
    x = torch.randn(16, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    return x, y


def _train(setup: str, opt_cls: type, rank: int) -> dict[str, Any]:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = _model(SMALL if setup == "ddp_small" else DEEP)
    initial = [p.detach().clone() for p in model.parameters()]
    if setup == "fsdp2":
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer)
        fully_shard(model)
        net: torch.nn.Module = model
    else:
        net = DDP(model)
    if setup == "zero":
        zero = ZeroRedundancyOptimizer(
            net.parameters(), optimizer_class=opt_cls, parameters_as_bucket_view=True, **HP
        )
        opt: Any = zero
        local = zero.optim
    else:
        opt = local = opt_cls(net.parameters(), **HP)
    losses = []
    for step in range(STEPS):
        x, y = _batch(rank, step)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # Full parameters (FSDP2: an all-gather of the DTensor shards, on every rank).
    params = [p.full_tensor() if setup == "fsdp2" else p for p in model.parameters()]
    # How many storages hold the parameters (ZeRO's bucket views: one per rank's shard).
    storages = None if setup == "fsdp2" else {p.untyped_storage().data_ptr() for p in params}
    dist.barrier()
    return {
        "params": [p.detach().clone() for p in params],
        "initial": initial,
        "losses": losses,
        "engine_counts": dict(getattr(local, "engine_counts", {})),
        "local_tensors": sum(len(g["params"]) for g in local.param_groups),
        "dtensor": type(next(model.parameters())).__name__,
        "storages": None if storages is None else len(storages),
    }


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    """One rank: every setup with torch.optim.AdamW, then with descentlab.torch.AdamW."""
    import torch.distributed as dist

    torch.set_num_threads(1)  # two ranks on two cores
    results: dict[str, Any] = {}
    # pytest's filterwarnings=error does not reach this process: every warning is recorded
    # and sent back, and the parent fails on descentlab's own (and on any not from torch).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import descentlab.torch
        from descentlab.engines import compiled

        dist.init_process_group(
            "gloo",
            init_method=f"file://{init_file}",
            rank=rank,
            world_size=WORLD,
            timeout=timedelta(seconds=TIMEOUT),
        )
        try:
            for name, cls in (("torch", torch.optim.AdamW), ("descentlab", descentlab.torch.AdamW)):
                for setup in SETUPS:
                    start = time.perf_counter()
                    results[setup, name] = _train(setup, cls, rank)
                    results[setup, name]["seconds"] = time.perf_counter() - start
        finally:
            dist.destroy_process_group()
    results["compiles"] = compiled.compiles
    results["warnings"] = sorted(
        {(w.category.__name__, str(w.message), w.filename, w.lineno) for w in caught}
    )
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")


# ----------------------------------------------------------------------------- the parent
@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Run both ranks once; returns each rank's results."""
    import torch.multiprocessing as mp

    root = tmp_path_factory.mktemp("distributed")
    with pytest.MonkeyPatch.context() as mp_env:
        # Both ranks share one inductor cache, kept out of the user's.
        mp_env.setenv("TORCHINDUCTOR_CACHE_DIR", str(root / "inductor"))
        ctx = mp.start_processes(
            _worker,
            args=(str(root / "init"), str(root)),
            nprocs=WORLD,
            join=False,
            start_method="spawn",
        )
    deadline = time.monotonic() + TIMEOUT
    try:
        while not ctx.join(timeout=max(1.0, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD} ranks did not finish within {TIMEOUT} s (a hang?)")
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.kill()
                proc.join()
    return [torch.load(root / f"rank{r}.pt") for r in range(WORLD)]


def test_no_descentlab_warning(runs: list[dict[str, Any]]) -> None:
    """descentlab's own warnings (a fallback, a refused engine) must not fire here."""
    package = str(Path(descentlab.__file__).parent)
    torch_dir = str(Path(torch.__file__).parent)
    for rank, res in enumerate(runs):
        ours = [w for w in res["warnings"] if "descentlab" in w[1] or w[2].startswith(package)]
        assert not ours, f"rank {rank}: {ours}"
        foreign = [w for w in res["warnings"] if not w[2].startswith(torch_dir)]
        assert not foreign, f"rank {rank}: warnings from outside torch: {foreign}"


@pytest.mark.parametrize("setup", SETUPS)
def test_ranks_agree_and_descentlab_equals_torch(runs: list[dict[str, Any]], setup: str) -> None:
    """(a) both ranks end with the same parameters, bit for bit; (b) descentlab == torch.optim."""
    for name in NAMES:
        r0, r1 = (res[setup, name] for res in runs)
        assert r0["losses"] != r1["losses"], "the ranks should see different data"
        assert (
            len(r0["params"]) == len(r1["params"]) == 2 * (SMALL if setup == "ddp_small" else DEEP)
        )
        for i, (a, b) in enumerate(zip(r0["params"], r1["params"], strict=True)):
            assert torch.equal(a, b), f"{name}: parameter {i} differs between the ranks"
        moved = [rel_err(p, q) for p, q in zip(r0["params"], r0["initial"], strict=True)]
        assert min(moved) > 1e-4, f"{name}: training did not move every parameter"
    for rank, res in enumerate(runs):
        ours, ref = res[setup, "descentlab"], res[setup, "torch"]
        errs = [rel_err(p, q) for p, q in zip(ours["params"], ref["params"], strict=True)]
        assert max(errs) <= TOL, f"rank {rank}: descentlab vs torch.optim, errors {errs}"
        assert ours["losses"] == pytest.approx(ref["losses"], rel=1e-10, abs=0)
    if setup == "zero":  # the scenario intended: ZeRO did re-home the parameters
        assert all(res["zero", name]["storages"] == WORLD for res in runs for name in NAMES)


def test_all_deep_setups_reach_the_same_parameters(runs: list[dict[str, Any]]) -> None:
    """DDP, ZeRO and FSDP2 are the same computation: every run ends where torch's DDP does."""
    base = runs[0]["ddp", "torch"]["params"]
    for setup in ("ddp", "zero", "fsdp2"):
        for name in NAMES:
            got = runs[0][setup, name]["params"]
            errs = [rel_err(p, q) for p, q in zip(got, base, strict=True)]
            assert max(errs) <= TOL, f"{setup}/{name} vs ddp/torch: {max(errs):.3g}"


def test_engines(runs: list[dict[str, Any]]) -> None:
    """Which engine stepped: eager where auto can (a short run never compiles), the
    reference for DTensor shards."""
    for rank, res in enumerate(runs):
        counts = {s: res[s, "descentlab"]["engine_counts"] for s in SETUPS}
        n = {s: res[s, "descentlab"]["local_tensors"] for s in SETUPS}
        print(f"rank {rank}: {counts}, tensors stepped locally {n}, compiles {res['compiles']}")
        assert n["ddp_small"] < 16 <= min(n["ddp"], n["zero"])
        assert counts["ddp_small"]["compiled"] == counts["ddp_small"]["eager"] == 0
        assert counts["ddp_small"]["reference"] == STEPS * n["ddp_small"]
        for setup in ("ddp", "zero"):
            assert counts[setup]["eager"] == STEPS * n[setup], setup
            assert counts[setup]["compiled"] == 0, setup
            assert counts[setup]["reference"] == 0, setup
        assert res["fsdp2", "descentlab"]["dtensor"] == "DTensor"
        assert counts["fsdp2"]["compiled"] == 0
        assert counts["fsdp2"]["reference"] == STEPS * n["fsdp2"]
