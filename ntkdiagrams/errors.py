"""Error hierarchy of ntkdiagrams.

Every error the package raises on purpose derives from :class:`NtkDiagramsError`, so a
caller (and the command line) can tell bad input from a bug.  Messages say *what* is wrong
and *where* (file, key, expression, argument).
"""


class NtkDiagramsError(Exception):
    """Base class of all deliberate errors of ntkdiagrams."""


class ExpressionError(NtkDiagramsError, ValueError):
    """An expression (rule file, activation, request) is malformed or not allowed."""


class RuleFileError(NtkDiagramsError, ValueError):
    """A rule file is unreadable, malformed, or inconsistent.

    The message names the file and the key."""


class ActivationError(NtkDiagramsError, ValueError):
    """An activation function is unknown or cannot be parsed."""


class InputError(NtkDiagramsError, ValueError):
    """Numerical input of the wrong shape, with NaN/inf, or out of range."""


class UnsupportedError(NtkDiagramsError, NotImplementedError):
    """A request the engine understands but cannot (yet) answer at the asked order."""


class NumericsError(InputError):
    """A number that cannot be trusted: a Gaussian expectation that diverges or cannot be
    computed accurately for the given activation and variances, or a NaN/inf in a result.

    A subclass of :class:`InputError` (the cause is the input: activation, hyper-parameters,
    depth).  Optional attributes, None when unknown: ``layer``, ``statistic``, ``inputs`` (the
    tuple of input indices), ``reason`` (e.g. "diverges", "loses accuracy", "not finite") and
    ``growth`` (the divergence measure s of :mod:`ntkdiagrams.numerics.gaussian.growth`)."""

    def __init__(self, message: str, *, layer=None, statistic=None, inputs=None, reason=None,
                 growth=None):
        super().__init__(message)
        self.layer = layer
        self.statistic = statistic
        self.inputs = inputs
        self.reason = reason
        self.growth = growth


class ClusterError(NtkDiagramsError, RuntimeError):
    """A run on a dask cluster (``scheduler=...``) could not finish: the scheduler cannot be reached
    or went away, or a task kept killing its workers.  Nothing is written."""
