"""Which parameters hold learned values: the evidence that tells fine-tuning from scratch.

A fine-tuning lr is destructive only where the weights already hold something learned; the
same lr is ordinary on freshly initialised weights. The guard asks this module, per
parameter, why its values are learned (or ``None``: fresh). The evidence is of two kinds:

* **trained**: an earlier optimizer of this process, watched by a guard, stepped the tensor
  ``MIN_TRAINED_STEPS`` times or more (pretraining, then a new optimizer for fine-tuning);
* **loaded**: ``load_state_dict`` put values into it that this process never saw untrained
  (a checkpoint from disk, or a state saved after training). A state saved before any
  training (the initial weights kept to restart a sweep or after an lr range test) is
  recognised when loaded back and counts as fresh, as does a load that changes nothing.

Loads are seen once :func:`watch_loads` has run (``descentlab check`` runs it before the
script starts): it wraps ``nn.Module.load_state_dict`` and ``nn.Module.state_dict`` to note,
per parameter, a fingerprint of its values (its shape, dtype and first elements). The
wrappers only read; they return what torch returns, and a failure in the bookkeeping is
swallowed, never raised into the user's load.

Example:
    >>> import torch
    >>> watching = watch_loads()
    >>> pretrained = torch.nn.Linear(4, 4)
    >>> model = torch.nn.Linear(4, 4)
    >>> learned(model.weight) is None  # freshly initialised
    True
    >>> _ = model.load_state_dict(pretrained.state_dict())  # saved untrained: still fresh
    >>> learned(model.weight) is None
    True
    >>> _ = model.load_state_dict({"weight": torch.ones(4, 4), "bias": torch.zeros(4)})
    >>> learned(model.weight)
    'loaded by load_state_dict as weight'
    >>> watching.remove()
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["MIN_TRAINED_STEPS", "Training", "claim", "learned", "watch_loads"]

MIN_TRAINED_STEPS = 50
"""Steps an earlier optimizer must have taken before its weights count as trained."""
_PRINT_ELEMENTS = 16  # elements of a tensor in its fingerprint
_MAX_PRINTS = 100_000  # fingerprints of saved states kept (the oldest are forgotten)


@dataclass(eq=False)
class Training:
    """The steps one guarded optimizer has taken (shared by the entries of its tensors)."""

    steps: int = 0


class _ById:
    """A map from live tensors (by identity, weakly) to a value: an entry goes with its
    tensor. Tensors cannot be keys of a ``WeakKeyDictionary`` (their ``==`` is
    element-wise)."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[torch.Tensor], Any]] = {}

    def get(self, tensor: torch.Tensor) -> Any:
        entry = self._entries.get(id(tensor))
        return entry[1] if entry is not None and entry[0]() is tensor else None

    def set(self, tensor: torch.Tensor, value: Any) -> None:
        key = id(tensor)
        entries = self._entries

        def forget(ref: weakref.ref[torch.Tensor], key: int = key) -> None:
            if entries.get(key, (None,))[0] is ref:
                del entries[key]

        entries[key] = (weakref.ref(tensor, forget), value)

    def pop(self, tensor: torch.Tensor) -> None:
        if self.get(tensor) is not None:
            del self._entries[id(tensor)]


_loaded = _ById()  # tensor -> why its loaded values are learned
_trainer = _ById()  # tensor -> the Training of the last guarded optimizer that stepped it
_saved: dict[tuple[Any, ...], str | None] = {}  # fingerprint -> learned status when saved
_lock = threading.Lock()


def learned(tensor: torch.Tensor, training: Training | None = None) -> str | None:
    """Why ``tensor``'s values are learned, or ``None`` if nothing says so. ``training``:
    the asking optimizer's own record (its own steps are not evidence)."""
    why = _loaded.get(tensor)
    if why is not None:
        return str(why)
    trainer = _trainer.get(tensor)
    if trainer is not None and trainer is not training and trainer.steps >= MIN_TRAINED_STEPS:
        return f"trained {trainer.steps} steps by an earlier optimizer"
    return None


def claim(tensors: Iterable[torch.Tensor], training: Training) -> None:
    """Note that the optimizer of ``training`` now steps ``tensors``."""
    with _lock:
        for t in tensors:
            _trainer.set(t, training)


def _fingerprints(tensors: Sequence[torch.Tensor]) -> list[tuple[Any, ...] | None]:
    """Shape, dtype and first elements of each tensor (``None`` where it cannot be read
    cheaply: meta, sparse, or a tensor subclass such as a sharded one); one read per
    device."""
    out: list[tuple[Any, ...] | None] = [None] * len(tensors)
    heads: dict[torch.device, list[tuple[int, torch.Tensor]]] = {}
    with torch.no_grad():
        for k, t in enumerate(tensors):
            plain = type(t) in (torch.Tensor, nn.Parameter) and t.layout == torch.strided
            if not plain or t.is_meta or t.numel() == 0 or not t.is_contiguous():
                continue
            head = t.detach().reshape(-1)[:_PRINT_ELEMENTS].to(torch.float64)
            heads.setdefault(t.device, []).append((k, head))
        for parts in heads.values():
            values = torch.cat([h for _, h in parts]).tolist()
            start = 0
            for k, head in parts:
                t = tensors[k]
                n = head.numel()
                out[k] = (tuple(t.shape), str(t.dtype), tuple(values[start : start + n]))
                start += n
    return out


def _after_save(module: nn.Module) -> None:
    params = [p for _, p in module.named_parameters()]
    with _lock:
        for p, fp in zip(params, _fingerprints(params), strict=True):
            if fp is None:
                continue
            _saved.pop(fp, None)  # the newest status, at the end of the order
            _saved[fp] = learned(p)  # what loading it back will mean
        while len(_saved) > _MAX_PRINTS:
            del _saved[next(iter(_saved))]


def _after_load(module: nn.Module, keys: Any, before: dict[str, tuple[torch.Tensor, Any]]) -> None:
    named = [(n, p) for n, p in module.named_parameters() if n in keys]
    prints = _fingerprints([p for _, p in named])
    with _lock:
        for (name, p), fp in zip(named, prints, strict=True):
            old = before.get(name)
            if fp is not None and old is not None and old[0] is p and old[1] == fp:
                continue  # the load changed nothing: p keeps what it was
            # a state this process saved untrained is fresh; any other holds learned values
            fresh = fp is not None and fp in _saved and _saved[fp] is None
            why = None if fresh else f"loaded by load_state_dict as {name}"
            _trainer.pop(p)  # its earlier training is gone with its values
            if why is None:
                _loaded.pop(p)
            else:
                _loaded.set(p, why)


_depth = threading.local()  # state_dict calls itself for each submodule


def _wrap_state_dict(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def state_dict(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        depth = getattr(_depth, "value", 0)
        _depth.value = depth + 1
        try:
            result = original(self, *args, **kwargs)
        finally:
            _depth.value = depth
        if depth == 0 and not args and kwargs.get("destination") is None:
            with contextlib.suppress(Exception):  # bookkeeping never breaks the user's call
                _after_save(self)
        return result

    state_dict.__descentlab_watch__ = True  # type: ignore[attr-defined]
    return state_dict


def _wrap_load_state_dict(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def load_state_dict(self: nn.Module, state_dict: Any, *args: Any, **kwargs: Any) -> Any:
        before: dict[str, tuple[torch.Tensor, Any]] = {}
        with contextlib.suppress(Exception):
            named = [(n, p) for n, p in self.named_parameters() if n in state_dict]
            prints = _fingerprints([p for _, p in named])
            before = {n: (p, fp) for (n, p), fp in zip(named, prints, strict=True)}
        result = original(self, state_dict, *args, **kwargs)
        with contextlib.suppress(Exception):  # bookkeeping never breaks the user's call
            _after_load(self, state_dict, before)
        return result

    load_state_dict.__descentlab_watch__ = True  # type: ignore[attr-defined]
    return load_state_dict


def watch_loads() -> Any:
    """Note from now on which parameters ``load_state_dict`` fills with learned values
    (``descentlab check`` calls it before the script starts). Returns a handle whose
    ``remove()`` puts torch's methods back (where this call installed the watch)."""
    with _lock:
        if getattr(nn.Module.load_state_dict, "__descentlab_watch__", False):
            return _Unwatch(None)
        originals = (nn.Module.state_dict, nn.Module.load_state_dict)
        nn.Module.state_dict = _wrap_state_dict(originals[0])  # type: ignore[method-assign]
        nn.Module.load_state_dict = _wrap_load_state_dict(  # type: ignore[method-assign]
            originals[1]
        )
        return _Unwatch(originals)


class _Unwatch:
    def __init__(self, originals: tuple[Any, Any] | None) -> None:
        self._originals = originals

    def remove(self) -> None:
        if self._originals is not None:
            with _lock:
                nn.Module.state_dict, nn.Module.load_state_dict = self._originals  # type: ignore[method-assign]
            self._originals = None
