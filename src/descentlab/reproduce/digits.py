"""The digits MLP that the fine-tuning and weight-decay claims train, how it is scored,
and the stacked trainer that trains many configurations and seeds of it in one step.

The model is so small that a one-seed step is mostly Python and dispatch overhead, so many
models in one step cost little more than one; each stacked run still comes out as if it had
been trained alone (``tests/test_reproduce_decay.py`` checks it run by run).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from .. import torch as dt
from ..lab.stacked import ACTIVATIONS, linear_layers

Tensor = torch.Tensor


def mlp() -> torch.nn.Module:
    """The digits MLP: 64 pixels, 128 ReLU units, 10 classes."""
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def accuracy(model: torch.nn.Module, x: Tensor, y: Tensor) -> float:
    """The fraction of ``x`` that ``model`` classifies as ``y``."""
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


def stacked_forward(template: torch.nn.Module, flat: Tensor, x: Tensor) -> Tensor:
    """``template``'s forward on every seed at once: ``x`` is [S, B, in] and row s of ``flat``
    [S, n] is seed s's parameters, flattened in ``template.parameters()`` order.

    The layers are read as the lab's batched runs read them (``lab.stacked.linear_layers``,
    so it follows ``mlp()`` if that changes): a Linear becomes one batched matmul on views
    of ``flat`` (seed s reads only row s), an activation is applied element-wise. The views
    come from one ``split``, whose backward writes the gradient once (slicing each view would
    fill a zero [S, n] gradient per parameter).
    """
    names, shapes = zip(*((n, p.shape) for n, p in template.named_parameters()), strict=True)
    layers = linear_layers(template, list(names))
    if layers is None:
        raise TypeError(f"cannot stack {type(template).__name__} over seeds")
    pieces = flat.split([s.numel() for s in shapes], dim=1)
    views = [v.unflatten(1, shape) for v, shape in zip(pieces, shapes, strict=True)]
    for layer, w, b in layers:
        if w < 0:
            x = ACTIVATIONS[type(layer)](x)
        elif b is None:
            x = torch.bmm(x, views[w].transpose(1, 2))
        else:
            x = torch.baddbmm(views[b].unsqueeze(1), x, views[w].transpose(1, 2))
    return x


Config = tuple[str, float, float, float]  # optimizer name, lr, weight decay, loss scale


def train_stacked(
    x: Tensor,
    y: Tensor,
    configs: Sequence[Config],
    seeds: Sequence[int],
    epochs: int,
    batch: int,
) -> list[list[torch.nn.Module]]:
    """Train ``mlp()`` for every configuration and seed together, ``epochs`` epochs of
    mini-batches of ``batch``: one model per seed, a list of them per configuration.

    Why stacked: the model is so small that a one-seed step is mostly Python and dispatch
    overhead, so many models in one step cost little more than one. Each configuration's
    seeds are one [S, n] tensor (row s: seed s's weights flattened in ``parameters()``
    order) with its own lr and decay; the forward runs all rows of all configurations at once.
    What stays per seed, exactly as a one-seed run: the initialisation
    (``torch.manual_seed(seed)`` then ``mlp()``) and the batch order (its own generator, the
    same in every configuration). The loss is the sum over rows of each row's scaled mean
    cross-entropy, so each row of the gradient is that run's own gradient (rows never mix: a
    NaN in a diverged run stays in its row). Adam and AdamW are elementwise with scalar
    hyperparameters, so each row's update is the one-seed update, weight decay included;
    only the batched matmul may round differently. ``engine="reference"`` is the engine a
    one-seed run gets (``"auto"`` would compile a stack of many seeds).
    """
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(mlp())
    with torch.no_grad():
        init = torch.stack([torch.nn.utils.parameters_to_vector(m.parameters()) for m in models])
    flats = [init.clone().requires_grad_() for _ in configs]
    # one optimizer per rule, a param group per configuration: each group is stepped on its
    # own with its own scalar lr and decay, as a one-group optimizer would (fewer calls)
    opts = []
    for cls, decoupled in ((dt.Adam, False), (dt.AdamW, True)):
        groups = [
            {"params": [flat], "lr": lr, "weight_decay": wd}
            for flat, (name, lr, wd, _) in zip(flats, configs, strict=True)
            if (name == "adamw") == decoupled
        ]
        if groups:
            opts.append(cls(groups, engine="reference"))
    scales = torch.tensor([scale for *_, scale in configs]).repeat_interleave(len(seeds))
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    for _ in range(epochs):
        order = torch.stack([torch.randperm(len(x), generator=g) for g in gens])
        for idx in order.split(batch, dim=1):  # [S, B]: seed s's batch in row s
            idx = idx.repeat(len(configs), 1)  # [C * S, B], configuration-major
            for opt in opts:
                opt.zero_grad()
            out = stacked_forward(models[0], torch.cat(flats), x[idx])
            losses = torch.nn.functional.cross_entropy(
                out.flatten(0, 1), y[idx].flatten(), reduction="none"
            )
            (scales * losses.view(idx.shape).mean(1)).sum().backward()
            for opt in opts:
                opt.step()
    trained = []
    with torch.no_grad():
        for flat in flats:
            trained.append([copy.deepcopy(m) for m in models])
            for model, row in zip(trained[-1], flat, strict=True):
                torch.nn.utils.vector_to_parameters(row, model.parameters())
    return trained
