"""descentlab.guard: each pitfall is caught by a tiny loop that has it, correct loops stay
silent, and a guarded run is bit-identical to an unguarded one."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import descentlab
import descentlab.torch as dt
from descentlab import guard, param_groups_for_decay
from descentlab.diagnostics.guards import Finding, Guard, PitfallWarning

ZEROING = ["zero_grad", "zero_grad_keep", "model_zero_grad", "grad_none", "zero_first"]


def _model(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1)).to(dtype)


def _batch(i: int) -> torch.Tensor:
    return torch.linspace(-1, 1, 8).reshape(2, 4) * (1 + 0.1 * i)


def _train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    zeroing: str | None,
    *,
    steps: int = 3,
    micro: int = 1,
    clip: bool = False,
) -> None:
    """``steps`` optimizer steps of ``micro`` backward passes each; ``zeroing=None`` never
    zeroes the gradients."""
    for step in range(steps):
        if zeroing == "zero_first":
            opt.zero_grad()
        for k in range(micro):
            model(_batch(step * micro + k)).pow(2).mean().backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if zeroing == "zero_grad":
            opt.zero_grad()
        elif zeroing == "zero_grad_keep":
            opt.zero_grad(set_to_none=False)
        elif zeroing == "model_zero_grad":
            model.zero_grad()
        elif zeroing == "grad_none":
            for p in model.parameters():
                p.grad = None


def _recorded(body: Callable[[], Guard]) -> tuple[Guard, list[str]]:
    """Run ``body`` recording the guard's warnings; checks one warning per finding."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handle = body()
    assert all(issubclass(w.category, PitfallWarning) for w in caught), caught
    messages = [str(w.message) for w in caught]
    assert messages == [f.message for f in handle.findings]
    return handle, messages


def _kinds(handle: Guard) -> list[str]:
    return [f.kind for f in handle.findings]


def _run(
    make: Callable[[Any], torch.optim.Optimizer],
    zeroing: str | None,
    *,
    micro: int = 1,
    steps: int = 3,
    clip: bool = False,
    **options: Any,
) -> Guard:
    model = _model()
    opt = make(model.parameters())

    def body() -> Guard:
        handle = guard(opt, model, **options)
        _train(model, opt, zeroing, steps=steps, micro=micro, clip=clip)
        return handle

    return _recorded(body)[0]


OPTIMIZERS: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
    "torch.SGD": lambda p: torch.optim.SGD(p, lr=1e-4, momentum=0.9),
    "torch.Adam": lambda p: torch.optim.Adam(p, lr=1e-5),
    "descentlab.SGD": lambda p: dt.SGD(p, lr=1e-4, momentum=0.9),
    "descentlab.Adam.flat": lambda p: dt.Adam(p, lr=1e-5, engine="flat"),
}


# -- 1. gradients accumulating across steps -------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("zeroing", ZEROING)
def test_accumulation_silent_when_zeroed(name: str, zeroing: str) -> None:
    assert _run(OPTIMIZERS[name], zeroing).findings == []


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_accumulation_caught_without_zeroing(name: str) -> None:
    handle = _run(OPTIMIZERS[name], None)
    assert _kinds(handle) == ["grad_accumulation"]  # once, though every step carries
    finding = handle.findings[0]
    assert finding.param == "0.weight" and finding.figure == 2 and finding.step == 1
    assert "zero_grad()" in finding.fix and "3 more parameters" in finding.detail


@pytest.mark.parametrize("zeroing", ["zero_grad", "zero_grad_keep", "zero_first"])
def test_declared_accumulation_is_silent(zeroing: str) -> None:
    make = OPTIMIZERS["torch.Adam"]
    assert _run(make, zeroing, micro=4, accumulation_steps=4).findings == []
    # several backward passes per step with zeroing after each step is never a carry-over
    assert _run(make, zeroing, micro=3).findings == []


def test_declared_accumulation_without_zeroing_is_caught() -> None:
    handle = _run(OPTIMIZERS["torch.Adam"], None, micro=4, accumulation_steps=4)
    assert _kinds(handle) == ["grad_accumulation"]
    assert handle.findings[0].figure == 8  # two steps' micro-batches in one .grad


def test_clipping_between_backward_and_step_is_silent() -> None:
    assert _run(OPTIMIZERS["torch.SGD"], "zero_grad_keep", clip=True).findings == []
    assert _kinds(_run(OPTIMIZERS["torch.SGD"], None, clip=True)) == ["grad_accumulation"]


# -- 2. Adam-family optimizer with coupled L2 weight decay --------------------------------


COUPLED = {
    "torch.Adam": lambda p: torch.optim.Adam(p, weight_decay=1e-2),
    "torch.RMSprop": lambda p: torch.optim.RMSprop(p, weight_decay=1e-2),
    "descentlab.Adam": lambda p: dt.Adam(p, weight_decay=1e-2),
    "descentlab.RMSprop": lambda p: dt.RMSprop(p, weight_decay=1e-2),
    # torch.optim's other adaptive rules: L2 unless decoupled, as Adam's
    "torch.NAdam": lambda p: torch.optim.NAdam(p, weight_decay=1e-2),
    "descentlab.NAdam": lambda p: dt.NAdam(p, weight_decay=1e-2),
    "descentlab.RAdam": lambda p: dt.RAdam(p, weight_decay=1e-2),
    "descentlab.Adamax": lambda p: dt.Adamax(p, weight_decay=1e-2),
    "descentlab.Adagrad": lambda p: dt.Adagrad(p, weight_decay=1e-2),
    "descentlab.Adadelta": lambda p: dt.Adadelta(p, weight_decay=1e-2),
}
DECOUPLED = {
    "torch.AdamW": lambda p: torch.optim.AdamW(p),
    "torch.Adam.decoupled": lambda p: torch.optim.Adam(
        p, weight_decay=1e-2, decoupled_weight_decay=True
    ),
    "torch.Adam.no_decay": lambda p: torch.optim.Adam([{"params": g["params"]} for g in p]),
    "torch.SGD": lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=1e-2),
    "descentlab.AdamW": lambda p: dt.AdamW(p),
    "descentlab.SGD": lambda p: dt.SGD(p, lr=0.1, weight_decay=1e-2),
    "descentlab.NAdam.decoupled": lambda p: dt.NAdam(
        p, weight_decay=1e-2, decoupled_weight_decay=True
    ),
    "descentlab.RAdam.decoupled": lambda p: dt.RAdam(
        p, weight_decay=1e-2, decoupled_weight_decay=True
    ),
    "descentlab.Adafactor": lambda p: dt.Adafactor(p, weight_decay=1e-2),  # decoupled
    "descentlab.ASGD": lambda p: dt.ASGD(p, weight_decay=1e-2),  # not adaptive
    "descentlab.Rprop": lambda p: dt.Rprop(p),
}


@pytest.mark.parametrize("name", COUPLED)
def test_coupled_weight_decay_caught_at_attach(name: str) -> None:
    model = _model()
    opt = COUPLED[name](param_groups_for_decay(model, 1e-2))
    handle, messages = _recorded(lambda: guard(opt, model))
    assert _kinds(handle) == ["coupled_weight_decay"]
    assert handle.findings[0].figure == pytest.approx(1e-2)
    assert "group 0" in messages[0] and "AdamW" in messages[0] and "0.weight" in messages[0]


@pytest.mark.parametrize("name", DECOUPLED)
def test_decoupled_or_plain_decay_is_silent(name: str) -> None:
    model = _model()
    opt = DECOUPLED[name](param_groups_for_decay(model, 1e-2))
    assert _recorded(lambda: guard(opt, model))[0].findings == []


def test_coupled_weight_decay_caught_when_a_group_changes() -> None:
    model = _model()
    opt = torch.optim.Adam(param_groups_for_decay(model, 0.0), lr=1e-5)

    def body() -> Guard:
        handle = guard(opt, model)
        _train(model, opt, "zero_grad", steps=1)
        assert handle.findings == []
        opt.param_groups[0]["weight_decay"] = 1e-3
        _train(model, opt, "zero_grad", steps=1)
        return handle

    handle, _ = _recorded(body)
    assert _kinds(handle) == ["coupled_weight_decay"] and handle.findings[0].step == 1


# -- 3. non-finite gradients -----------------------------------------------------------------


def _nan_in_last_layer(model: nn.Module, opt: torch.optim.Optimizer, steps: int = 2) -> None:
    for step in range(steps):
        opt.zero_grad()
        loss = model(_batch(step)).sum()
        (loss * float("nan") if step == 1 else loss).backward()  # NaN at the second step
        opt.step()


def test_nonfinite_gradient_names_first_parameter() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    with torch.no_grad():
        model[0].weight.requires_grad_(False)  # the first parameter holding a NaN is 0.bias

    def body() -> Guard:
        handle = guard(opt, model)
        _nan_in_last_layer(model, opt)
        return handle

    handle, messages = _recorded(body)
    assert _kinds(handle) == ["nonfinite_grad"]
    assert handle.findings[0].param == "0.bias" and handle.findings[0].step == 1
    assert handle.findings[0].figure == 6 and "NaN" in messages[0]


def test_nonfinite_check_every() -> None:
    for every, expected in [(1, ["nonfinite_grad"]), (2, []), (0, [])]:
        model = _model()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)

        def body(model: nn.Module = model, opt: Any = opt, every: int = every) -> Guard:
            handle = guard(opt, model, check_every=every)
            _nan_in_last_layer(model, opt)
            return handle

        assert _kinds(_recorded(body)[0]) == expected


def test_finite_loop_is_silent() -> None:
    assert _run(lambda p: torch.optim.SGD(p, lr=1e-3), "zero_grad", steps=4).findings == []


# -- 4. fine-tuning: learned weights moved too far ------------------------------------------


def test_finetuning_lr_caught_in_first_steps() -> None:
    handle = _run(
        lambda p: torch.optim.Adam(p, lr=0.1), "zero_grad", finetuning=True, max_drift=None
    )
    assert _kinds(handle) == ["finetuning_lr"]  # one finding for the problem...
    finding = handle.findings[0]
    assert finding.param in ("0.weight", "2.weight") and finding.step == 0  # not a bias
    assert "(and 1 more tensors)" in finding.detail and finding.figure > 3e-2  # ...naming both


def test_finetuning_lr_small_lr_is_silent_and_threshold_configurable() -> None:
    def adam(lr: float) -> Callable[[Any], torch.optim.Optimizer]:
        return lambda p: torch.optim.Adam(p, lr=lr)

    off = {"finetuning": True, "max_drift": None}
    assert _run(adam(1e-5), "zero_grad", **off).findings == []
    assert _run(adam(0.1), "zero_grad", **off, max_update_ratio=None).findings == []
    assert _run(adam(0.1), "zero_grad", **off, max_update_ratio=10.0).findings == []


@pytest.mark.parametrize("finetuning", [None, False])
def test_fresh_weights_are_never_watched(finetuning: bool | None) -> None:
    """From scratch large first steps are ordinary, on small layers and large ones alike."""
    assert (
        _run(lambda p: torch.optim.Adam(p, lr=0.1), "zero_grad", finetuning=finetuning).findings
        == []
    )
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 300), nn.Linear(300, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def body() -> Guard:
        handle = guard(opt, model, finetuning=finetuning)
        model(torch.ones(2, 300)).sum().backward()
        opt.step()
        return handle

    assert _recorded(body)[0].findings == []


def test_finetuning_lr_only_measured_in_first_steps() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def body() -> Guard:
        handle = guard(opt, model, ratio_steps=2, finetuning=True, max_drift=None)
        _train(model, opt, "zero_grad", steps=2)
        opt.param_groups[0]["lr"] = 10.0  # a huge step, but after the watched ones
        _train(model, opt, "zero_grad", steps=1)
        return handle

    assert _recorded(body)[0].findings == []


def _classify(model: nn.Module, steps: int, lr: float, seed: int = 0, **options: Any) -> Guard:
    """``steps`` of Adam on a small classification task (labels shifted by ``seed``: another
    task), guarded; warnings off."""
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(256, 8, generator=gen)
    y = (x[:, :4].argmax(1) + seed) % 4
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    handle = guard(opt, model, warn=False, **options)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return handle


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))


def test_weights_trained_by_an_earlier_optimizer_are_watched() -> None:
    model = _net()
    assert _classify(model, 60, 1e-2).findings == []  # from scratch: silent
    handle = _classify(model, 20, 3e-2, seed=1)  # a new optimizer on the trained weights
    assert _kinds(handle) == ["finetuning_lr"]
    assert "trained 60 steps by an earlier optimizer" in handle.findings[0].detail
    assert _classify(model, 20, 1e-4, seed=2).findings == []  # a sound fine-tuning lr
    brief = _net(1)
    _classify(brief, 10, 1e-2)  # fewer than MIN_TRAINED_STEPS: no evidence
    assert _classify(brief, 20, 3e-2, seed=1).findings == []


def test_loaded_weights_are_watched_and_restored_initial_ones_are_not() -> None:
    from descentlab.diagnostics import provenance

    watching = provenance.watch_loads()
    try:
        pretrained = _net()
        initial = {k: v.clone() for k, v in pretrained.state_dict().items()}  # untrained
        _classify(pretrained, 60, 1e-2)
        checkpoint = pretrained.state_dict()
        model = _net(1)
        model.load_state_dict(checkpoint)
        assert _kinds(_classify(model, 5, 3e-2, seed=1)) == ["finetuning_lr"]
        model.load_state_dict(initial)  # back to the untrained weights: from scratch
        assert _classify(model, 5, 3e-2, seed=1).findings == []
        fresh = _net(2)
        fresh.load_state_dict(_net(3).state_dict())  # another model's initial weights
        assert _classify(fresh, 5, 3e-2).findings == []
        head = _net(4)  # the body loaded, a new head: only the body is learned
        body = {k: v for k, v in checkpoint.items() if k.startswith("0.")}
        head.load_state_dict(body, strict=False)
        found = _classify(head, 5, 3e-2, seed=1).findings
        assert [f.param for f in found] == ["0.weight"], found
        assert "loaded by load_state_dict as 0.weight" in found[0].detail
        outside = _net(5)  # a checkpoint this process never saw (from disk)
        outside.load_state_dict({k: v + 0.01 for k, v in checkpoint.items()})
        assert _kinds(_classify(outside, 5, 3e-2, seed=1)) == ["finetuning_lr"]
    finally:
        watching.remove()
    assert not hasattr(nn.Module.load_state_dict, "__descentlab_watch__")


def test_a_resumed_run_is_not_fine_tuning() -> None:
    model = _net()
    first = torch.optim.Adam(model.parameters(), lr=1e-2)
    guard(first, model, warn=False)
    x = torch.randn(64, 8)
    for _ in range(60):
        first.zero_grad()
        model(x).square().mean().backward()
        first.step()
    state = first.state_dict()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    opt.load_state_dict(state)  # the run goes on with its optimizer state
    handle = guard(opt, model, warn=False)
    for _ in range(5):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    assert handle.findings == []


def test_a_warmup_does_not_hide_a_destructive_lr() -> None:
    """The peak lr comes after the first measured steps; the early phase's drift sees it.
    Switched off (max_drift=None), the same run is silent: the drift is what catches it."""

    def finetune(**options: Any) -> Guard:
        model = _net()
        _classify(model, 60, 1e-2)
        opt = torch.optim.Adam(model.parameters(), lr=5e-2)
        warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 30))
        handle = guard(opt, model, warn=False, **options)
        gen = torch.Generator().manual_seed(7)
        x = torch.randn(256, 8, generator=gen)
        y = (x[:, 4:].argmax(1) + 1) % 4  # another task
        for _ in range(150):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            warmup.step()
        return handle

    found = finetune().findings
    assert _kinds_of(found) == ["finetuning_lr"] and "||w - w0||/||w0||" in found[0].detail
    assert found[0].figure > 0.5 and found[0].step > 3
    assert finetune(max_drift=None).findings == []


def _kinds_of(findings: list[Finding]) -> list[str]:
    return [f.kind for f in findings]


# -- zero_grad between backward and step ------------------------------------------------------


@pytest.mark.parametrize("zeroing", ["zero_grad", "zero_grad_keep", "model_zero_grad", "none"])
def test_gradients_reset_between_backward_and_step_caught(zeroing: str) -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def body() -> Guard:
        handle = guard(opt, model)
        for i in range(3):
            model(_batch(i)).pow(2).mean().backward()
            if zeroing == "zero_grad":
                opt.zero_grad()
            elif zeroing == "zero_grad_keep":
                opt.zero_grad(set_to_none=False)
            elif zeroing == "model_zero_grad":
                model.zero_grad()
            else:
                for p in model.parameters():
                    p.grad = None
            opt.step()
        return handle

    handle = _recorded(body)[0]
    assert _kinds(handle) == ["zeroed_before_step"]
    assert "(and 3 more parameters)" in handle.findings[0].detail
    assert handle.findings[0].step == 0  # at the first step


def test_a_parameter_without_a_gradient_is_not_a_reset() -> None:
    """A step with no backward since the last one (LBFGS's closure does its own) and a
    branch of the model that this batch did not reach stay silent."""
    model = _model()
    unused = nn.Linear(3, 3)
    opt = torch.optim.SGD([*model.parameters(), *unused.parameters()], lr=0.1)

    def body() -> Guard:
        handle = guard(opt, model)
        opt.step()  # nothing reached yet
        _train(model, opt, "zero_grad_keep")
        return handle

    assert _recorded(body)[0].findings == []
    lbfgs = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=3)

    def closure() -> torch.Tensor:
        lbfgs.zero_grad()
        loss = model(_batch(0)).pow(2).mean()
        loss.backward()
        return loss

    def run() -> Guard:
        handle = guard(lbfgs, model)
        for _ in range(3):
            lbfgs.step(closure)
        return handle

    assert _recorded(run)[0].findings == []


# -- 5. 16-bit eps, decay on biases and normalization weights -------------------------------


def test_float16_eps_underflow_caught() -> None:
    model = _model(dtype=torch.float16)
    opt = torch.optim.Adam(param_groups_for_decay(model, 0.0), eps=1e-8)
    handle, messages = _recorded(lambda: guard(opt, model))
    assert _kinds(handle) == ["eps_underflow"]  # one finding for the two groups
    assert handle.findings[0].param == "0.weight" and "float16" in messages[0]


@pytest.mark.parametrize(
    ("dtype", "make"),
    [
        (torch.float16, lambda p: torch.optim.Adam(p, eps=1e-4)),
        (torch.bfloat16, lambda p: torch.optim.Adam(p, eps=1e-8)),
        (torch.float32, lambda p: torch.optim.Adam(p, eps=1e-8)),
        (torch.float16, lambda p: dt.Adam(p, eps=1e-8)),  # float32 arithmetic
        (torch.float16, lambda p: torch.optim.SGD(p, lr=0.1)),
    ],
)
def test_eps_silent(dtype: torch.dtype, make: Callable[[Any], torch.optim.Optimizer]) -> None:
    model = _model(dtype=dtype)
    opt = make(model.parameters())
    assert _recorded(lambda: guard(opt, model))[0].findings == []


def _normed() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3), nn.LayerNorm(3)
    )


def test_decay_on_bias_and_norm_caught() -> None:
    model = _normed()
    opt = torch.optim.AdamW(model.parameters(), weight_decay=0.1)
    handle, messages = _recorded(lambda: guard(opt, model))
    assert handle.findings == [] and messages == []  # advice: no finding, no warning
    (advice,) = handle.advice
    assert advice.kind == "decay_on_bias_or_norm" and advice.param == "0.bias" and advice.advice
    assert "6 bias/normalization" in advice.detail and "param_groups_for_decay" in advice.fix


def test_decay_groups_are_silent_and_right() -> None:
    model = _normed()
    groups = param_groups_for_decay(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [[names[id(p)] for p in g["params"]] for g in groups] == [
        ["0.weight", "3.weight"],
        ["0.bias", "1.weight", "1.bias", "3.bias", "4.weight", "4.bias"],
    ]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    for opt in (torch.optim.AdamW(groups), torch.optim.SGD(model.parameters(), lr=0.1)):
        handle = _recorded(lambda opt=opt: guard(opt, model))[0]
        assert handle.findings == [] and handle.advice == []


def test_norm_weight_with_two_dims_needs_the_model() -> None:
    class Norm2d(nn.GroupNorm):
        pass

    norm = Norm2d(1, 2)
    norm.weight = nn.Parameter(torch.ones(2, 1))  # unusual shape: only the model tells
    model = nn.Sequential(norm)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.1)
    found = _recorded(lambda: guard(opt, model))[0]
    assert [f.param for f in found.advice] == ["0.weight"]


# -- 6. abrupt lr change ---------------------------------------------------------------------


class _KerasMomentum(torch.optim.Optimizer):
    """Momentum with the lr inside the velocity: ``v = mu * v - lr * g; w += v``."""

    lr_inside_velocity = True

    def __init__(self, params: Any, lr: float, momentum: float = 0.9) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                v = self.state[p].setdefault("v", torch.zeros_like(p))
                v.mul_(group["momentum"]).sub_(p.grad, alpha=group["lr"])
                p.add_(v)


def _lr_drop(make: Callable[[Any], torch.optim.Optimizer]) -> Guard:
    model = _model()
    opt = make(model.parameters())

    def body() -> Guard:
        handle = guard(opt, model, max_update_ratio=None)
        _train(model, opt, "zero_grad", steps=2)
        opt.param_groups[0]["lr"] /= 100
        _train(model, opt, "zero_grad", steps=2)
        return handle

    return _recorded(body)[0]


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9),
        lambda p: torch.optim.Adam(p, lr=1e-2),
        lambda p: torch.optim.RMSprop(p, lr=1e-2, momentum=0.9),
        lambda p: dt.SGD(p, lr=1e-2, momentum=0.9),
        lambda p: dt.Momentum(p, lr=1e-2),
    ],
)
def test_lr_jump_silent_where_lr_sits_outside_the_velocity(
    make: Callable[[Any], torch.optim.Optimizer],
) -> None:
    assert _lr_drop(make).findings == []


def test_lr_jump_caught_where_lr_sits_inside_the_velocity() -> None:
    handle = _lr_drop(lambda p: _KerasMomentum(p, lr=1e-2))
    assert _kinds(handle) == ["lr_jump"] and handle.findings[0].figure == pytest.approx(0.01)


# -- the handle ------------------------------------------------------------------------------


def test_names_without_model_and_warning_stack() -> None:
    w = nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([w], lr=0.1)
    with pytest.warns(PitfallWarning, match=r"group 0, param 0, shape \(2,\)") as record:
        guard(opt)
        for _ in range(2):
            w.sum().backward()
            opt.step()
    assert record[0].filename == __file__  # points at the user's opt.step()
    assert "\n" not in str(record[0].message)


def test_remove_detaches_every_hook() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    with guard(opt, model) as handle:
        pass
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    _train(model, opt, None)  # would be reported if still attached
    assert handle.findings == []


def test_public_names() -> None:
    assert descentlab.PitfallWarning is PitfallWarning
    assert issubclass(PitfallWarning, UserWarning)
    assert "guard" in descentlab.__all__ and "param_groups_for_decay" in descentlab.__all__
    finding = Finding("k", "p", 1.0, "d", "f", 0)
    assert finding.message == "k after 0 steps: p: d; fix: f"
    with pytest.raises(ValueError, match="accumulation_steps"):
        guard(torch.optim.SGD([nn.Parameter(torch.ones(1))]), accumulation_steps=0)


# -- the guard changes no number -------------------------------------------------------------


BIT_IDENTICAL = {
    "torch.Adam": lambda p: torch.optim.Adam(p, lr=0.1, weight_decay=1e-2),
    "torch.SGD": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "descentlab.Adam": lambda p: dt.Adam(p, lr=0.1, weight_decay=1e-2),
    "descentlab.Adam.flat": lambda p: dt.Adam(p, lr=0.1, weight_decay=1e-2, engine="flat"),
}


@pytest.mark.parametrize("name", BIT_IDENTICAL)
@pytest.mark.parametrize("zeroing", [None, "zero_grad_keep"])
def test_guarded_run_is_bit_identical(name: str, zeroing: str | None) -> None:
    """Several pitfalls fire (decayed biases, large updates, and the
    carried-over gradients when never zeroed), yet every number matches."""
    results = []
    for guarded in (False, True):
        model = _model()
        opt = BIT_IDENTICAL[name](model.parameters())

        def body(model: nn.Module = model, opt: Any = opt, guarded: bool = guarded) -> Guard:
            handle = guard(opt, model, accumulation_steps=2, finetuning=True) if guarded else None
            _train(model, opt, zeroing, steps=4, micro=2, clip=True)
            return handle or Guard(opt)

        handle = _recorded(body)[0]
        results.append((model, opt, handle))
    (plain, plain_opt, _), (watched, watched_opt, handle) = results
    assert [a.kind for a in handle.advice] == ["decay_on_bias_or_norm"]
    assert "finetuning_lr" in _kinds(handle)
    assert ("grad_accumulation" in _kinds(handle)) == (zeroing is None)
    for p, q in zip(plain.parameters(), watched.parameters(), strict=True):
        assert torch.equal(p, q) and torch.equal(p.grad, q.grad)
    a, b = plain_opt.state_dict(), watched_opt.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for key, state in a["state"].items():
        for name, value in state.items():
            other = b["state"][key][name]
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other


# -- float16 second moments -------------------------------------------------------------------


def _small_gradient_run(dtype: torch.dtype, make: Callable[..., Any], steps: int = 20) -> Guard:
    """A float16 (or other) model trained with ordinary small gradients (|g| ~ 1e-5): their
    squares, 1e-10, are below float16's smallest number."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 1)).to(dtype)
    opt = make(model.parameters())
    handle = guard(opt, model, warn=False)
    x = torch.randn(16, 32).to(dtype)
    for _ in range(steps):
        opt.zero_grad()
        (model(x).float().square().mean() * 1e-4).backward()
        opt.step()
    return handle


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.AdamW(ps, lr=1e-3),
        lambda ps: dt.AdamW(ps, lr=1e-3),
        lambda ps: torch.optim.RMSprop(ps, lr=1e-3),
    ],
    ids=["torch.AdamW", "descentlab.AdamW", "torch.RMSprop"],
)
def test_a_float16_second_moment_that_underflows_is_caught(make: Callable[..., Any]) -> None:
    kinds = [f.kind for f in _small_gradient_run(torch.float16, make).findings]
    assert kinds.count("second_moment_underflow") == 1, kinds


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_second_moments_in_range_are_silent(dtype: torch.dtype) -> None:
    handle = _small_gradient_run(dtype, lambda ps: torch.optim.AdamW(ps, lr=1e-3))
    assert "second_moment_underflow" not in [f.kind for f in handle.findings]
