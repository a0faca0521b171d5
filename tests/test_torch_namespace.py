"""``import descentlab.torch as optim`` in place of ``import torch.optim as optim``: every
``optim.X`` a script may use resolves, to descentlab's rule where it has one and to torch's
own object otherwise (modules, the base class, LBFGS, SparseAdam); SGD takes sparse
gradients as torch's does."""

from __future__ import annotations

import importlib

import pytest
import torch

import descentlab.torch as dt
from descentlab.tools.cli import TORCH_OWN


def _public(module: object) -> set[str]:
    return {name for name in dir(module) if not name.startswith("_")}


def test_every_public_name_of_torch_optim_is_offered() -> None:
    missing = _public(torch.optim) - _public(dt)
    assert not missing, f"descentlab.torch lacks torch.optim's {sorted(missing)}"


def test_every_torch_optim_optimizer_class_is_descentlab_s_own_rule_or_named_as_torch_s() -> None:
    """Each optimizer class of torch.optim is a descentlab rule, except the ones the README
    and ``descentlab list`` name as torch's own (LBFGS, SparseAdam)."""
    for name in _public(torch.optim):
        obj = getattr(torch.optim, name)
        if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer):
            if obj is torch.optim.Optimizer or name in TORCH_OWN:
                assert getattr(dt, name) is obj, name
            else:
                assert issubclass(getattr(dt, name), dt.RuleOptimizer), name


def test_torch_own_modules_and_classes_are_the_same_objects() -> None:
    for name in ("Optimizer", "lr_scheduler", "swa_utils", *TORCH_OWN):
        assert getattr(dt, name) is getattr(torch.optim, name), name
    step_lr = importlib.import_module("descentlab.torch.lr_scheduler").StepLR
    assert step_lr is torch.optim.lr_scheduler.StepLR
    from descentlab.torch.swa_utils import AveragedModel

    assert AveragedModel is torch.optim.swa_utils.AveragedModel
    for cls in (dt.SGD, dt.Adam, dt.AdamW, dt.RMSprop, dt.Momentum):
        assert issubclass(cls, dt.Optimizer) and issubclass(cls, dt.RuleOptimizer)


def test_a_scheduler_from_the_submodule_drives_a_drop_in() -> None:
    w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = dt.SGD([w], lr=1.0)
    sched = dt.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        w.grad = torch.ones(2, dtype=torch.float64)
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25]
    assert w.tolist() == [-3.25, -3.25]  # 1 + 1 + 0.5 + 0.5 + 0.25: the lr of each step


def test_a_user_written_optimizer_subclasses_optim_optimizer() -> None:
    class SignSGD(dt.Optimizer):  # as tutorials write one
        def __init__(self, params, lr=0.1):  # type: ignore[no-untyped-def]
            super().__init__(params, {"lr": lr})

        @torch.no_grad()
        def step(self, closure=None):  # type: ignore[no-untyped-def]
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.add_(p.grad.sign(), alpha=-group["lr"])

    w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    w.grad = torch.tensor([3.0, -0.5])
    SignSGD([w]).step()
    assert w.tolist() == pytest.approx([0.9, -0.9])


def test_lbfgs_with_a_closure_and_sparse_adam_on_a_sparse_embedding() -> None:
    torch.manual_seed(0)
    x = torch.randn(32, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    model = torch.nn.Linear(3, 1, bias=False)
    opt = dt.LBFGS(model.parameters(), lr=1, max_iter=50)

    def closure():  # type: ignore[no-untyped-def]
        opt.zero_grad()
        loss = (model(x).squeeze(1) - y).pow(2).mean()
        loss.backward()
        return loss

    opt.step(closure)
    assert float(closure().detach()) < 1e-8
    emb = torch.nn.Embedding(10, 4, sparse=True)
    sparse = dt.SparseAdam(emb.parameters(), lr=0.1)
    before = emb.weight.detach().clone()
    emb(torch.tensor([1, 3])).sum().backward()
    sparse.step()
    moved = (emb.weight != before).any(1)
    assert moved.tolist() == [i in (1, 3) for i in range(10)]


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"momentum": 0.9},
        {"momentum": 0.9, "nesterov": True},
        {"momentum": 0.5, "dampening": 0.1, "maximize": True},
    ],
    ids=["plain", "momentum", "nesterov", "dampening-maximize"],
)
def test_sgd_takes_sparse_gradients_as_torch_sgd_does(kw: dict[str, object]) -> None:
    torch.manual_seed(0)
    mine = torch.nn.Embedding(20, 4, sparse=True).double()
    theirs = torch.nn.Embedding(20, 4, sparse=True).double()
    theirs.load_state_dict(mine.state_dict())
    opt = dt.SGD(mine.parameters(), lr=0.1, **kw)  # type: ignore[arg-type]
    ref = torch.optim.SGD(theirs.parameters(), lr=0.1, **kw)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(1)
    for _ in range(12):
        idx = torch.randint(0, 20, (8,), generator=gen)  # repeats: an uncoalesced gradient
        for emb, o in ((mine, opt), (theirs, ref)):
            o.zero_grad()
            emb(idx).pow(2).sum().backward()
            assert emb.weight.grad is not None and emb.weight.grad.is_sparse
            o.step()
    assert torch.allclose(mine.weight, theirs.weight, rtol=1e-12, atol=1e-15)
    if kw.get("momentum"):
        buf = opt.state[mine.weight]["momentum_buffer"]  # dense here, sparse in torch
        assert torch.allclose(buf, ref.state[theirs.weight]["momentum_buffer"].to_dense())
    assert opt.engine_counts["reference"] == 12


def test_sgd_with_weight_decay_takes_sparse_gradients_too() -> None:
    emb = torch.nn.Embedding(5, 2, sparse=True).double()
    before = emb.weight.detach().clone()
    opt = dt.SGD(emb.parameters(), lr=0.1, momentum=0.9, weight_decay=0.5)
    emb(torch.tensor([0])).sum().backward()
    opt.step()
    # the decay reaches every row (the L2 term is dense), the gradient only row 0
    want = before - 0.1 * (
        0.5 * before + torch.nn.functional.one_hot(torch.tensor(0), 5).double()[:, None]
    )
    assert torch.allclose(emb.weight, want, rtol=1e-14)


def test_the_adaptive_drop_ins_refuse_sparse_gradients_clearly() -> None:
    emb = torch.nn.Embedding(5, 2, sparse=True)
    opt = dt.Adam(emb.parameters())
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="Adam does not support sparse gradients"):
        opt.step()


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_a_load_hook_may_keep_its_own_entries_in_state(name: str) -> None:
    """torch's generic test: a load_state_dict post-hook stores a non-tensor in ``state``."""
    model = torch.nn.Linear(3, 2)
    opt = getattr(dt, name)(
        model.parameters(), lr=1e-2, **({"momentum": 0.9} if name == "SGD" else {})
    )
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    opt.register_load_state_dict_post_hook(lambda o: o.state.__setitem__("hooked", True))
    opt.load_state_dict(opt.state_dict())
    assert opt.state["hooked"] is True
    assert all(isinstance(v, dict) for k, v in opt.state.items() if isinstance(k, torch.Tensor))


def test_by_name_holds_every_registered_optimizer_and_each_class_once() -> None:
    import descentlab

    assert sorted(dt.BY_NAME) == sorted(descentlab.list_optimizers())
    assert all(cls.info.name == name for name, cls in dt.BY_NAME.items())
    rules = {
        o for o in vars(dt).values() if isinstance(o, type) and issubclass(o, dt.RuleOptimizer)
    }
    assert set(dt.BY_NAME.values()) == rules - {dt.RuleOptimizer}
