"""Combinatorics shared by the engine and the sampler: set partitions of neuron indices and legs."""
from __future__ import annotations


def set_partitions(items):
    """All set partitions of a list (lists of blocks), generated recursively."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        yield [[first]] + part
        for k in range(len(part)):
            yield part[:k] + [[first] + part[k]] + part[k + 1:]
