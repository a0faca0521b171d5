"""The seed's "Adam from scratch" loop, with descentlab's NumPy rule instead of a hand copy.

Run: python examples/seed_adam_from_scratch.py
"""

import numpy as np

from descentlab import numpy as dnp

target = np.array([1.0, 2.0, 3.0])
w = np.array([0.0, 0.0, 0.0])
opt = dnp.adam(lr=1e-3)  # the seed's defaults: beta1=0.9, beta2=0.999, eps=1e-8
state = opt.init(w)
for _t in range(1, 101):
    grad = 2 * w - target  # the seed's gradient, as written
    w, state = opt.update(w, grad, state)
print(f"after 100 steps: {w}")
# Adam moves each weight by about lr per step: 100 steps of 1e-3 go 0.1, not to the target.
# (The seed's comment "should be close to [1, 2, 3]" does not hold; note also that the
# gradient it writes, 2w - target, has its minimum at target / 2.)
