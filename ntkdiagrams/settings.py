"""Run-time settings: one object, read from the environment at the entry points only.

Nothing below the entry points (the public functions of :mod:`ntkdiagrams`, the command line)
reads an environment variable; everything that needs a setting takes a :class:`Settings`
argument.  The environment variables, all optional:

=========================  =================================================================
``NTKDIAGRAMS_JIT``        ``0`` keeps the numpy path of the Gaussian quadrature even where the
                           compiled kernel (numba, the ``fast`` extra) is installed
``NTKDIAGRAMS_THREADS``    threads of the quadrature's thread pool (default: the cores available
                           to this process, at most 8; ``1``: no threads)
``NTKDIAGRAMS_CACHE``      folder of the derivation cache (default ``~/.cache/ntkdiagrams``);
                           ``off`` disables it
``NTKDIAGRAMS_KEEP_HEAP``  ``1`` asks glibc to keep 64 MB of freed heap (``mallopt(M_TOP_PAD)``),
                           a process-wide change that saves page faults in the quadrature's many
                           ~1 MB temporaries (docs/gaussian.md has the measurements); off unless
                           asked for
=========================  =================================================================

>>> s = Settings.from_environment({"NTKDIAGRAMS_THREADS": "2", "NTKDIAGRAMS_CACHE": "off"})
>>> s.threads, s.cache_dir, s.jit
(2, None, True)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from .errors import InputError

_OFF = ("off", "0", "no", "false")


def _available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    """How to run (never what to compute: no setting changes a number beyond rounding).

    ``jit``: use the compiled quadrature kernel where it applies; ``threads``: size of the
    quadrature's thread pool (1: none); ``cache_dir``: folder of the derivation cache (and of the
    quadrature tables, ``cache_dir/tables``), or None for no cache; ``keep_heap``: the glibc M_TOP_PAD change (process-wide, opt-in)."""

    jit: bool = True
    threads: int = 1
    cache_dir: Path | None = None
    keep_heap: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """The settings the ``NTKDIAGRAMS_*`` variables ask for (module docstring)."""
        env = os.environ if environ is None else environ
        jit = env.get("NTKDIAGRAMS_JIT", "1").strip().lower() not in _OFF
        raw = env.get("NTKDIAGRAMS_THREADS", "0").strip() or "0"
        try:
            threads = int(raw)
        except ValueError:
            raise InputError(f"NTKDIAGRAMS_THREADS must be an integer; got {raw!r}") from None
        if threads <= 0:
            threads = min(8, _available_cores())
        where = env.get("NTKDIAGRAMS_CACHE", "").strip()
        if where.lower() in _OFF:
            cache = None
        else:
            cache = Path(where).expanduser() if where else Path.home() / ".cache" / "ntkdiagrams"
        keep = env.get("NTKDIAGRAMS_KEEP_HEAP", "0").strip().lower() not in _OFF
        return cls(jit=jit, threads=threads, cache_dir=cache, keep_heap=keep)

    def with_(self, **changes) -> "Settings":
        """A copy with some fields changed (``settings.with_(threads=1)``)."""
        return replace(self, **changes)


def resolve(settings: Settings | None) -> Settings:
    """The settings to use at an entry point: the given ones, or those of the environment."""
    return Settings.from_environment() if settings is None else settings
