"""The lab's error for bad input: the CLI prints its one line and exits with status 2."""


class LabError(ValueError):
    """Bad input to the lab (unknown workload, malformed list, unwritable folder...)."""
