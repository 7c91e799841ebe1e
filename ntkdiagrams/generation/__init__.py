"""Generated numeric code (a stage after numerics): standalone numpy or JAX modules that evaluate
derived statistics, ``codegen(stats, activation, *, rules=None, target="numpy")`` → source text
(``nd.codegen``, ``ntkdiagrams codegen``).  See :mod:`ntkdiagrams.generation.generate`; the code
copied into every module is :mod:`ntkdiagrams.generation.runtime_source` (never imported here).
"""
from .generate import TARGETS, codegen

__all__ = ["TARGETS", "codegen"]
