"""Memory of :func:`ntkdiagrams.numerics.evaluate.evaluate`, estimated before anything is allocated.

Every tensor of docs/conventions.md §3 with m input labels is an (N,)*m float64 array, so a
four-index tensor (V, A, B, D, F, P…U) costs 8 N⁴ bytes: N = 200 inputs make one V 12.8 GB.
What :func:`~ntkdiagrams.numerics.evaluate.evaluate` holds at its peak, in units of 8 N^m bytes:

* the result, every requested tensor at every layer ℓ = 1…L (``depth`` units per tensor; the
  arrays are shared with the running layer, so the statistics themselves cost nothing more);
* the tensors the recursions need but nobody asked for (K for V, say), at layers ℓ and ℓ+1:
  two units each;
* the Gaussian expectation tensors E[a₁…a_k] = ⟨f₁(z_{a₁})⋯f_k(z_{a_k})⟩_{K^{(ℓ)}} of one layer,
  shared by every term (:class:`~ntkdiagrams.numerics.evaluate.GaussianCache`): about one k = m
  point tensor per needed m-index tensor for a smooth σ, two for an activation with kinks
  (whose blob sums Σ_β T_β⟨∂_β F⟩ are integrated by parts and cached as whole contractions);
* while one k-point expectation tensor is computed
  (:func:`ntkdiagrams.numerics.gaussian.core.expectation_tensor`): the index tuples, their
  canonical copies and np.unique's keys, sort and inverse, (16 k + 41) bytes per entry, i.e.
  13 units for k = 4 (the 47.7 GiB of ``--random 200,3 --stats V`` are its 4 × N⁴ int64 tuples);
* einsum temporaries, about 4 units of the largest tensor;
* the quadrature's working set, bounded by its chunks of points: :data:`QUADRATURE_BYTES`.

Checked against tracemalloc's peak of real runs (tanh and ReLU, depth 3 and 6, N = 20 and 40,
stats V / K,G1,V / Theta,Theta1,A / all, the quadrature stubbed): the estimate is 4–20 % above
the measured peak of the N-dependent part.
Writing the result as JSON costs about four more units per stored number (Python floats in
nested lists); ``output="json"`` adds them.

:func:`available_memory` reads MemAvailable of /proc/meminfo (and a cgroup v2 limit where one is
set), falling back to ``os.sysconf``; :func:`largest_fitting` finds the largest N whose
estimate fits a budget.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

__all__ = ["QUADRATURE_BYTES", "available_memory", "evaluate_memory", "format_bytes", "largest_fitting"]

#: working set of the Gaussian quadrature (chunks of 2²¹ points, a few float64 arrays each)
QUADRATURE_BYTES = 256 * 2 ** 20

#: bytes per stored number when a result is written as JSON (float object + list slot + text)
JSON_BYTES_PER_NUMBER = 32


def _tensor_arities(names: Sequence[str], rules) -> dict:
    return {t: int(rules.tensors[t].nlabels) for t in names}


def evaluate_memory(n_inputs: int, depth: int, stats: Sequence[str] | str = ("K", "G1", "V"), rules=None, *,
                    activation=None, extra: dict | None = None, output: str | None = None) -> int:
    """Estimated peak memory in bytes of ``evaluate(activation, depth, inputs, stats=stats,
    rules=rules, extra=extra)`` for ``n_inputs`` = N inputs (see the module docstring).

    ``stats``: tensor names or ``"all"``; ``rules``: a RuleSet, a rule-file name/path or None
    (mlp); ``activation``: an Activation or its text, used only to tell whether σ has kinks
    (None: assume it has, the larger estimate); ``extra``: {name: Recursion} evaluated alongside
    (correlator requests); ``output``: ``"json"`` adds the cost of writing the result as JSON.

    >>> evaluate_memory(200, 3, ["V"], activation="tanh") > 200 * 2 ** 30
    True
    """
    from ..engine.derivation import resolve_rules
    from ..errors import InputError
    from .activations import Activation, parse_activation
    from .evaluate import derivable, required_tensors

    if int(n_inputs) < 1 or int(depth) < 1:
        raise InputError(f"need n_inputs >= 1 and depth >= 1; got {n_inputs}, {depth}")
    N, L = int(n_inputs), int(depth)
    rules = resolve_rules(rules)
    names = derivable(rules) if stats == "all" else [s for s in stats if s in rules.tensors]
    extra = dict(extra or {})
    extra_layer = set().union(*(r.layer_tensors for r in extra.values())) if extra else set()
    needed = required_tensors(names + sorted(extra_layer), rules)
    ar = _tensor_arities(set(needed) | set(names), rules)
    extra_ar = {k: len(r.labels) for k, r in extra.items()}
    if activation is None:
        kinked = True
    else:
        act = activation if isinstance(activation, Activation) else parse_activation(activation)
        kinked = act.has_delta(2)
    per_tensor_cache = 2 if kinked else 1

    units = 0.0                              # in float64 entries (8 bytes)
    stored = 0.0
    for t in names:
        stored += L * N ** ar[t]
    for m in extra_ar.values():
        stored += L * N ** m
    units += stored
    for t in needed:
        if t not in names:
            units += 2 * N ** ar[t]
        units += per_tensor_cache * N ** ar[t]
    kmax = max(list(ar.values()) + list(extra_ar.values()) + [2])
    k = min(kmax, 4)                          # expectation tensors have at most four points
    units += (16 * k + 41) / 8 * N ** k       # expectation_tensor's index bookkeeping
    units += 4 * N ** kmax                    # einsum temporaries
    total = 8 * units + QUADRATURE_BYTES
    if output == "json":
        total += JSON_BYTES_PER_NUMBER * stored
    return int(total)


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping: MemAvailable of /proc/meminfo,
    lowered to a cgroup v2 limit (memory.max − memory.current) where one is set; else
    ``os.sysconf`` (available physical pages); None when nothing tells."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        avail = None
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            avail = None
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as fh:
            limit = fh.read().strip()
        if limit.isdigit():
            with open("/sys/fs/cgroup/memory.current", encoding="ascii") as fh:
                left = int(limit) - int(fh.read().strip())
            avail = left if avail is None else min(avail, left)
    except (OSError, ValueError):
        pass
    return None if avail is None else max(int(avail), 0)


def largest_fitting(estimate: Callable[[int], int], budget: int, upper: int) -> int:
    """The largest N in 1…upper with ``estimate(N) <= budget`` (0 if not even N = 1 fits);
    ``estimate`` must grow with N."""
    if estimate(1) > budget:
        return 0
    lo, hi = 1, int(upper)
    if estimate(hi) <= budget:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if estimate(mid) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``320 MiB``, ``12 KiB``."""
    for unit, size in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            v = n / size
            return f"{v:.1f} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{int(n)} B"
