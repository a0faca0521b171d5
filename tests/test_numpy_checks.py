"""The NumPy API refuses what would be silently wrong: a gradient of another shape (never
broadcast), trees that do not match, and state made by another optimizer. Each error is
a ValueError naming the place in the tree and what was expected there."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from descentlab import numpy as dnp

TREE_CASES: list[tuple[str, Any, Any, str]] = [
    (
        "column-for-vector",
        np.zeros(3),
        np.zeros((3, 1)),
        r"grads has shape \(3, 1\) but params has shape \(3,\)",
    ),
    (
        "row-for-matrix",
        {"w": np.zeros((3, 4))},
        {"w": np.zeros(4)},
        r"grads\['w'\] has shape \(4,\) but params\['w'\] has shape \(3, 4\)",
    ),
    ("scalar-for-vector", np.zeros(3), 2.0, r"grads has shape \(\) but params has shape \(3,\)"),
    ("extra-key", {"w": np.zeros(3)}, {"w": np.zeros(3), "b": np.zeros(2)}, r"unexpected \['b'\]"),
    ("missing-key", {"w": np.zeros(3), "b": np.zeros(2)}, {"w": np.zeros(3)}, r"missing \['b'\]"),
    (
        "short-list",
        [np.zeros(3), np.zeros(2)],
        [np.zeros(3)],
        r"grads must be a list of 2 items like params, got 1 items",
    ),
    ("dict-for-list", [np.zeros(3)], {"w": np.zeros(3)}, r"grads must be a list of 1 items"),
    (
        "nested",
        {"layer": [np.zeros(2), np.zeros((2, 2))]},
        {"layer": [np.zeros(2), np.zeros((2, 1))]},
        r"grads\['layer'\]\[1\] has shape \(2, 1\)",
    ),
]


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "nadam"])
@pytest.mark.parametrize("case", TREE_CASES, ids=[c[0] for c in TREE_CASES])
def test_functional_update_refuses_mismatched_gradients(name: str, case: tuple) -> None:
    _, params, grads, message = case
    opt = getattr(dnp, name)(lr=0.1)
    state = opt.init(params)
    with pytest.raises(ValueError, match=message):
        opt.update(params, grads, state)


def test_matching_trees_and_none_gradients_still_step() -> None:
    opt = dnp.adam(lr=0.1)
    params = {"layer": [np.ones(2), np.ones((2, 2))], "frozen": np.ones(3)}
    grads = {"layer": [np.ones(2), np.ones((2, 2))], "frozen": None}
    new, state = opt.update(params, grads, opt.init(params))
    assert new["layer"][1].shape == (2, 2) and np.all(new["layer"][1] < 1)
    assert np.array_equal(new["frozen"], params["frozen"])
    assert state.steps == {"layer": [1, 1], "frozen": 0}


def test_state_made_by_another_optimizer_is_named() -> None:
    params = {"w": np.zeros(3)}
    foreign = dnp.sgd(lr=0.1, momentum=0.9).init(params)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "state.slots['w'] holds ['momentum_buffer'], but adam keeps ['exp_avg', 'exp_avg_sq']"
        ),
    ):
        dnp.adam(lr=0.1).update(params, {"w": np.zeros(3)}, foreign)
    other_tree = dnp.adam(lr=0.1).init({"v": np.zeros(3)})
    with pytest.raises(ValueError, match=r"state.slots has other keys than params"):
        dnp.adam(lr=0.1).update(params, {"w": np.zeros(3)}, other_tree)
    with pytest.raises(TypeError, match="state must be the State"):
        dnp.adam(lr=0.1).update(params, {"w": np.zeros(3)}, {"w": {}})


def test_object_api_refuses_a_gradient_of_another_shape_and_foreign_state() -> None:
    w = np.zeros((3, 4))
    opt = dnp.Adam([w], lr=0.1)
    for bad in (np.zeros(4), np.zeros((4, 3)), np.zeros((3, 4, 1))):
        with pytest.raises(
            ValueError, match=r"grads\[0\] has shape .* but params\[0\] has shape \(3, 4\)"
        ):
            opt.step([bad])
    assert np.array_equal(w, np.zeros((3, 4)))  # nothing moved
    assert opt.state.steps == [0]
    sgd_state = dnp.SGD([np.zeros((3, 4))], lr=0.1, momentum=0.9).state_dict()
    with pytest.raises(
        ValueError, match=re.escape("slots[0] holds ['momentum_buffer'], but adam keeps")
    ):
        opt.load_state_dict(sgd_state)
    with pytest.raises(ValueError, match="expected state for 1 arrays, got 2"):
        opt.load_state_dict({"steps": [0, 0], "slots": [{}, {}]})


def test_one_array_is_checked_as_a_tree_of_arrays_is() -> None:
    """A single array takes a shorter path through update(): the same checks, the same
    messages (a gradient of another shape, a state made by another optimizer or for another
    shape)."""
    w = np.zeros((3, 4))
    adam = dnp.adam(lr=0.1)
    with pytest.raises(ValueError, match=r"grads has shape \(4,\) but params has shape"):
        adam.update(w, np.zeros(4), adam.init(w))
    sgd = dnp.sgd(lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=re.escape("state.slots holds ['momentum_buffer']")):
        adam.update(w, w, sgd.init(w))
    with pytest.raises(ValueError, match=r"state.slots\['exp_avg'\] has shape \(2,\)"):
        adam.update(w, w, adam.init(np.zeros(2)))
