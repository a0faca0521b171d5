"""The command-line tools built on the library and the lab: :mod:`.cli` (``descentlab``'s
commands), :mod:`.bench` (``descentlab bench``: step time and memory against torch.optim)
and :mod:`.demo` (the seed's training loop, run with a drop-in)."""
