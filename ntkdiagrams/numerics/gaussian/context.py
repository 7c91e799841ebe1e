"""The run-time resources of the quadrature, owned by one object.

A :class:`Quadrature` is made from a :class:`ntkdiagrams.settings.Settings` and holds what
the integration needs besides the numbers: whether the compiled kernel may be used
(``settings.jit``, for calls of at least :data:`COMPILED_MIN_POINTS` quadrature points), the
thread pool of the fast path (``settings.threads``; created on first use, shut down by
:meth:`Quadrature.close`), the folder of the quadrature tables kept between processes
(``settings.cache_dir / "tables"``, :mod:`.stored`), and counters of what was computed (which path integrated how many
tuples).  No setting changes a number: tuples are integrated
independently and write disjoint entries, whatever thread does it.

    with Quadrature(Settings(threads=2)) as quad:
        T = expectation_tensor(factors, K, quadrature=quad)

``settings.keep_heap`` (opt-in, ``NTKDIAGRAMS_KEEP_HEAP=1`` through
:meth:`ntkdiagrams.settings.Settings.from_environment`) calls :func:`keep_heap` when the
object is made: a process-wide change of the glibc allocator, never made implicitly.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...errors import InputError
from ...settings import Settings, resolve

__all__ = ["COMPILED_MIN_POINTS", "HEAP_TOP_PAD", "THREAD_NAME_PREFIX", "Quadrature", "in_groups", "keep_heap",
           "tables_folder"]

#: bytes of free heap that glibc keeps at the top of the heap instead of returning them to
#: the OS (M_TOP_PAD); see :func:`keep_heap`
HEAP_TOP_PAD = 64 << 20
#: the compiled kernel (numba) integrates a call of the fast path only from this many quadrature
#: points on (all tuples together); a smaller one takes the numpy path, which agrees to rounding.
#: The kernel's first call in a process costs ~0.5 s (importing numba, loading the cached kernel):
#: a CLI run whose only fast-path call is a few collinear pairs (8 pairs, 9e3 points, 2 ms in
#: numpy) paid it in full (issue 15: the CLI's overhead).  In the N = 16 grid the calls below the
#: bound take ≤ 0.03 s more per cell in numpy than compiled (tanh, gelu at |x|²/n0 = 1, measured).
COMPILED_MIN_POINTS = 1 << 14
#: name prefix of the pool's threads (tests check that none outlives a closed Quadrature)
THREAD_NAME_PREFIX = "ntkdiagrams-quadrature"
#: the counters of :attr:`Quadrature.stats`
STAT_KEYS = ("tuples", "simplices", "fast_tuples", "two_factor_tuples", "compiled_tuples", "addition_split",
             "addition_nodes", "series_tuples", "trigonometric_tuples", "erf_family_tuples")
_M_TOP_PAD = -2


def in_groups(pool: ThreadPoolExecutor | None, groups: int, run) -> None:
    """run(g) for g = 0 … groups − 1: on the threads of ``pool`` (a :attr:`Quadrature.pool`),
    or in this thread when there is no pool or one group.  The callers give each g an
    interleaved share of their work (t ≡ g mod groups), so expensive and cheap items mix."""
    if pool is None or groups <= 1:
        for g in range(groups):
            run(g)
    else:
        list(pool.map(run, range(groups)))


def keep_heap(pad: int = HEAP_TOP_PAD) -> bool:
    """Ask glibc to keep ``pad`` bytes of freed heap (mallopt M_TOP_PAD) for this process;
    True where it was applied, False without glibc.

    The fast path allocates and frees arrays of ~1 MB many thousand times per layer.  By
    default glibc hands such memory back to the OS and takes page faults to get it again; on
    small virtual machines that can cost more than the arithmetic (docs/gaussian.md).  The
    change is process-wide and stays: it is made only where ``Settings.keep_heap`` asks."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_TOP_PAD, int(pad)))
    except (OSError, AttributeError):  # not glibc
        return False


def tables_folder(settings: Settings) -> Path | None:
    """The folder of the quadrature tables kept between processes, ``settings.cache_dir / "tables"``
    (:mod:`.stored`), or None without a cache folder."""
    return None if settings.cache_dir is None else Path(settings.cache_dir) / "tables"


class Quadrature:
    """Compiled-kernel switch, thread pool and counters of the Gaussian quadrature.

    ``settings``: a :class:`ntkdiagrams.settings.Settings`; None resolves it with
    :func:`ntkdiagrams.settings.resolve` (the environment).  ``addition_theorem=False``
    evaluates every factor directly instead of by the addition theorem of its exponential
    form (for tests: the numbers agree to rounding).  ``compiled_min_points``: the smallest call
    (quadrature points) the compiled kernel takes until it has run once in this Quadrature
    (default :data:`COMPILED_MIN_POINTS`; 0: every call, for tests of the kernel on small
    tensors).  ``sharpness=False`` enters the fast path's ladders with every factor as the
    tanh family (:mod:`.sharpness`; for validation: the rules before 2026-12-01, more nodes for
    smoother factors).  ``spacing=False`` reads every factor's table of G(μ, s) on the finest grid
    (:mod:`.spacing`; for validation: the tables before 2026-12-03).  Use as a context manager, or call
    :meth:`close`: the pool's threads end there."""

    def __init__(self, settings: Settings | None = None, *, addition_theorem: bool = True,
                 compiled_min_points: int = COMPILED_MIN_POINTS, sharpness: bool = True,
                 spacing: bool = True):
        settings = resolve(settings)
        if not isinstance(settings, Settings):
            raise InputError(f"settings must be a ntkdiagrams.settings.Settings; got {settings!r}")
        if int(settings.threads) < 1:
            raise InputError(f"settings.threads must be >= 1; got {settings.threads!r}")
        self.settings = settings
        self.jit = bool(settings.jit)
        self.threads = int(settings.threads)
        self.addition_theorem = bool(addition_theorem)
        self.compiled_min_points = int(compiled_min_points)
        #: whether the fast path enters its ladders with each factor's sharpness
        #: (:mod:`.sharpness`; False: every factor as the tanh family, the rules before 2026-12-01)
        self.sharpness = bool(sharpness)
        #: whether each factor's table takes its own spacing (:mod:`.spacing`; False: the finest)
        self.spacing = bool(spacing)
        #: whether this Quadrature has run the compiled kernel: once it is loaded, calls of any
        #: size take it (the threshold only spares small runs the cost of loading it)
        self.kernel_used = False
        #: folder of the quadrature tables kept between processes (:mod:`.stored`), or None
        self.tables = tables_folder(settings)
        self.stats = dict.fromkeys(STAT_KEYS, 0)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._memo: dict = {}
        self._closed = False
        if settings.keep_heap:
            keep_heap()

    def wants_kernel(self, points: float) -> bool:
        """Whether a call of this many quadrature points goes to the compiled kernel (where it
        applies): ``jit`` on, and the kernel already loaded here or the call large enough
        (``compiled_min_points``)."""
        return self.jit and (self.kernel_used or points >= self.compiled_min_points)

    def kernel_ran(self, tuples: int) -> None:
        """Record a call of the compiled kernel over this many tuples."""
        self.count("compiled_tuples", tuples)
        self.kernel_used = True

    @property
    def pool(self) -> ThreadPoolExecutor | None:
        """The thread pool (made on first use), or None with one thread."""
        if self._closed:
            raise InputError("this Quadrature is closed")
        if self.threads <= 1:
            return None
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.threads,
                                                thread_name_prefix=THREAD_NAME_PREFIX)
            return self._pool

    def remember(self, name: str, arr, compute):
        """``compute(arr)``, computed once for equal arrays in a row (e.g. the kernel check of
        the tensors of one layer): the last argument and result per ``name`` are kept."""
        if not isinstance(arr, np.ndarray):
            return compute(arr)
        with self._lock:
            last = self._memo.get(name)
        if last is not None and last[0].shape == arr.shape and np.array_equal(last[0], arr):
            return last[1]
        out = compute(arr)
        with self._lock:
            self._memo[name] = (arr.copy(), out)
        return out

    def count(self, key: str, n: int) -> None:
        """Add n to the counter ``key`` (thread-safe)."""
        with self._lock:
            self.stats[key] += int(n)

    def close(self) -> None:
        """Shut the pool down and wait for its threads; the object cannot be used after."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._closed = True
        if pool is not None:
            pool.shutdown(wait=True)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Quadrature":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"Quadrature(jit={self.jit}, threads={self.threads}, {state})"
