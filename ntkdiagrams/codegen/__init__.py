"""Generated numeric code (a stage after numerics): standalone numpy or JAX modules that evaluate
derived statistics, ``codegen(stats, activation, *, rules=None, target="numpy")`` → source text.
See :mod:`ntkdiagrams.codegen.generate`."""
from .generate import TARGETS, codegen

__all__ = ["TARGETS", "codegen"]
