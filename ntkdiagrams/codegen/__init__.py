"""Generated numeric code (a stage after numerics): standalone numpy or JAX modules that evaluate
derived statistics, ``codegen(stats, activation, *, rules=None, target="numpy")`` → source text.
See :mod:`ntkdiagrams.codegen.generate`.

``nd.codegen(...)`` is the function, although importing this subpackage binds the name
``ntkdiagrams.codegen`` to the package: the package itself is callable (its module class forwards
calls to :func:`~ntkdiagrams.codegen.generate.codegen`).
"""
import sys
import types

from .generate import TARGETS, codegen

__all__ = ["TARGETS", "codegen"]


class _CallableModule(types.ModuleType):
    """This package, callable as :func:`~ntkdiagrams.codegen.generate.codegen`."""

    def __call__(self, *args, **kwargs):
        return codegen(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
