"""Monte Carlo estimates of every statistic of docs/conventions.md §3 from sampled networks.

This is the ground truth against which the diagram engine is checked; it shares no code
with the engine.  Per-network objects (z, NTK, dNTK, ddNTKs) come from
:mod:`ntkdiagrams.sampling.networks`; this module turns them into estimators with honest
(batch-means) standard errors; the ``sample`` command is :mod:`ntkdiagrams.cli.sample`.

Estimators (layer ℓ, fan-in width n = n_{ℓ−1}: n_0 for ℓ = 1, the hidden width for ℓ ≥ 2; the
statistics use neurons 0 and 1 of layer ℓ and are averaged over the 0 ↔ 1 relabelling).
The names are the rule file's (rules/mlp.toml), as in ``evaluate``; the two means are not
separable into their orders in 1/n from one width, so each is stored once, under a name that
says which rule-file tensors it estimates (:data:`SAMPLED_SUMS`):

============  ==================================================================
K+G1          E[z_{i;α1} z_{i;α2}]  = K + G1/n + O(1/n²)    (requested as K or G1)
Theta+Theta1  E[H_{ii;α1α2}]        = Θ + Θ1/n + O(1/n²)    (requested as Theta or Theta1)
============  ==================================================================

and the coefficients of 1/n, stored under their own names:

====  ==========================================================================
V     n (E[z_{0α1} z_{0α2} z_{1α3} z_{1α4}] − E[z_0z_0] E[z_1z_1])   stored V[α1,α2,α3,α4]
A     n Cov(H_{00;α1α2}, H_{11;α3α4})                                  A[α1,α2,α3,α4]
B     n Cov(H_{01;α1α2}, H_{01;α3α4})                                  B[α1,α3,α2,α4]
D     n Cov(H_{00;α1α2}, z_{1α3} z_{1α4})                             D[α1,α2,α3,α4]
F     n Cov(H_{01;α1α2}, z_{0α3} z_{1α4})                             F[α1,α3,α2,α4]
P     n E[dH_{011;α0α1α2} z_{0;α3}]                                   P[α0,α1,α2,α3]
Q     n E[dH_{001;α0α1α2} z_{1;α3}]                                   Q[α0,α1,α2,α3]
R     n E[ddIH_{0011;α0α1α2α3}]                                       R[α0,α1,α2,α3]
S     n E[ddIIH_{0011;α1α2α3α4}]                                      S[α1,α2,α3,α4]
T     n E[ddIIH_{0101;α1α2α3α4}]                                      T[α1,α3,α4,α2]
U     n E[ddIIH_{0110;α1α2α3α4}]                                      U[α1,α4,α2,α3]
====  ==========================================================================

(the storage order is the subscript order of the docs/conventions.md §3 table).  Means inside the
covariances are estimated from the same batch (an O(1/batch size) bias).  Standard errors
come from batch means: the S networks are split into b consecutive batches, each statistic
is estimated per batch, and the result is mean ± std(batch values, ddof=1)/√b.

Reproducibility: networks are drawn from ``numpy.random.default_rng(SeedSequence([seed,
0x4D43]))`` (a stream distinct from the one ``--random`` uses for inputs), all parameters of
one network contiguously, so the networks do not depend on ``chunk``; results with different
chunk sizes agree up to floating-point summation order.

``streams="chunks"`` (required with ``scheduler=...``, where chunks run as dask tasks: one stream
cannot be split between workers without replaying it) draws chunk g of the run (chunks counted
from 0 over all batches, a batch split into chunks of at most ``chunk`` networks) from its own
stream ``default_rng(SeedSequence([seed, 0x4D43], spawn_key=(g,)))``.  The networks then depend
on ``chunk`` (and on ``batches``), and a chunk's moment sums are added to its batch's in chunk
order, so a result is the same, bit for bit, in one process and on any cluster, for the same
seed, samples, batches and chunk (:func:`chunk_sums`, :func:`add_sums`, :func:`batch_estimate`).

Examples
--------
>>> import numpy as np
>>> from ntkdiagrams.sampling.model import ModelSpec
>>> from ntkdiagrams.numerics.activations import parse_activation
>>> m = ModelSpec(parse_activation("linear"), depth=2, width=8, cb=0.0, cw=1.0, lb=1.0,
...               lw=1.0, inputs=np.array([[1.0, 0.0]]))
>>> r = sample(m, 600, stats=("K",), batches=30)
>>> G = r["layers"][1]["K+G1"]    # layer 2 of a linear network: E[z z] = K = C_W x·x/n0 = 1/2, no 1/n term
>>> G["mean"].shape
(1, 1)
>>> bool(abs(G["mean"][0, 0] - 0.5) < 3 * G["stderr"][0, 0])
True

The names ``G`` (for K+G1) and ``NTK`` (for Theta+Theta1) of earlier versions are accepted
with a DeprecationWarning, and :func:`load_result` renames them in files written before.
"""
from __future__ import annotations

import json
import os
import sys
import time
import warnings
from typing import Callable, Iterable

import numpy as np

from ..numerics.inputs import check_inputs
from .model import ModelSpec
from ..errors import InputError
from ..files import atomic_output
from .interpreter import NetworkProgram, build_program
from .networks import activation_derivatives, forward, layer_objects, layer_widths, parameter_count

__all__ = ["ALL_STATS", "DEFAULT_STATS", "SAMPLED_SUMS", "STAT_ALIASES", "DEPRECATED_NAMES", "STREAMS",
           "add_sums", "batch_estimate", "check_counts", "chunk_plan", "chunk_rng", "chunk_sums", "chunk_requirements", "default_chunk",
           "parse_stats", "sample", "sample_memory", "save_result", "load_result"]

#: the sampled means and the rule-file tensors (coefficients of 1/n^0 and 1/n) whose sum each
#: estimates: result["layers"][ℓ-1]["K+G1"] ≈ K + G1/n, ["Theta+Theta1"] ≈ Θ + Θ1/n
SAMPLED_SUMS = {"K+G1": ("K", "G1"), "Theta+Theta1": ("Theta", "Theta1")}
#: what each sampled mean is, written into the result's meta["estimates"]
_ESTIMATES = {"K+G1": "E[z_{i;a1} z_{i;a2}] = K + G1/n + O(1/n^2)",
              "Theta+Theta1": "E[H_{ii;a1a2}] = Theta + Theta1/n + O(1/n^2)"}
#: rule-file names requested through the sampled mean that estimates them
STAT_ALIASES = {t: s for s, ts in SAMPLED_SUMS.items() for t in ts}
#: names of earlier versions (accepted with a DeprecationWarning; renamed when a file is read)
DEPRECATED_NAMES = {"G": "K+G1", "NTK": "Theta+Theta1"}

ALL_STATS = ("K+G1", "Theta+Theta1", "V", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U")
DEFAULT_STATS = ("K+G1", "Theta+Theta1", "V", "A", "B", "D", "F")
#: the names a request may use (rule-file names; the stored names; the deprecated ones)
_REQUESTABLE = ("K", "G1", "Theta", "Theta1") + ALL_STATS[2:]
SEED_TAG = 0x4D43  # "MC": separates the network stream from the input stream of --random
#: how networks are drawn: "one" stream for the run (the default), or one stream per chunk
#: (module docstring; the only choice with a scheduler)
STREAMS = ("one", "chunks")

# Which per-network objects each statistic needs.
_NEEDS = {"K+G1": set(), "V": set(), "Theta+Theta1": {"H"}, "A": {"H"}, "B": {"H"}, "D": {"H"},
          "F": {"H"}, "P": {"dH"}, "Q": {"dH"}, "R": {"ddIH"}, "S": {"ddIIH"},
          "T": {"ddIIH"}, "U": {"ddIIH"}}
# Which raw moments each statistic needs.
_MOMENTS = {"K+G1": ["zz"], "V": ["zz", "zzzz"], "Theta+Theta1": ["Hd"], "A": ["Hd", "HH_A"],
            "B": ["H01", "HH_B"], "D": ["Hd", "zz", "HZ_D0", "HZ_D1"],
            "F": ["H01", "z0z1", "HZ_F"], "P": ["P0", "P1"], "Q": ["Q0", "Q1"],
            "R": ["R0", "R1"], "S": ["S0", "S1"], "T": ["T0", "T1"], "U": ["U0", "U1"]}


def parse_stats(stats) -> tuple:
    """Normalise a stats request to stored names (:data:`ALL_STATS`, canonical order).

    ``stats``: "all", a comma-separated string such as "K,G1,Theta,V", or an iterable of names:
    rule-file names (K and G1 both request "K+G1", Theta and Theta1 "Theta+Theta1"), the stored
    names themselves, or the deprecated G and NTK (with a DeprecationWarning)."""
    if isinstance(stats, str):
        if stats.strip().lower() == "all":
            return ALL_STATS
        stats = [s for s in (t.strip() for t in stats.split(",")) if s]
    try:
        names = list(stats)
    except TypeError:
        raise InputError(f"stats must be 'all' or a list of names from {', '.join(_REQUESTABLE)}") from None
    if not names:
        raise InputError("no statistic requested")
    if "all" in names:
        return ALL_STATS
    bad = [s for s in names if not (isinstance(s, str) and (s in ALL_STATS or s in STAT_ALIASES
                                                            or s in DEPRECATED_NAMES))]
    if bad:
        raise InputError(f"unknown statistic(s) {', '.join(map(str, bad))}; "
                         f"known: {', '.join(_REQUESTABLE)} or 'all'")
    old = [s for s in names if s in DEPRECATED_NAMES]
    if old:
        warnings.warn("statistic name(s) " + ", ".join(f"{s} (now {DEPRECATED_NAMES[s]}: request it as "
                                                       f"{' or '.join(SAMPLED_SUMS[DEPRECATED_NAMES[s]])})"
                                                       for s in old) + " are deprecated",
                      DeprecationWarning, stacklevel=2)
    wanted = {STAT_ALIASES.get(s, DEPRECATED_NAMES.get(s, s)) for s in names}
    return tuple(s for s in ALL_STATS if s in wanted)  # canonical order, no duplicates


def _outer_sum(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Σ_c X[c, ...] ⊗ Y[c, ...] by one matrix product."""
    C = X.shape[0]
    return (X.reshape(C, -1).T @ Y.reshape(C, -1)).reshape(X.shape[1:] + Y.shape[1:])


def _moment_sums(obj: dict, names: Iterable[str]) -> dict:
    """Sums over the networks of a chunk of the raw products named in ``names``."""
    z = obj["z"]
    z0, z1 = z[:, 0], z[:, 1]
    out = {}
    zz = None
    for name in names:
        if name in ("zz", "zzzz", "HZ_D0", "HZ_D1") and zz is None:
            zz = z[:, :, :, None] * z[:, :, None, :]          # (C, 2, N, N)
        if name == "zz":
            out[name] = zz.sum(0)
        elif name == "zzzz":
            out[name] = _outer_sum(zz[:, 0], zz[:, 1])
        elif name == "z0z1":
            out[name] = np.einsum("ca,cb->ab", z0, z1)
        elif name == "Hd":
            H = obj["H"]
            out[name] = np.stack([H[:, 0, 0].sum(0), H[:, 1, 1].sum(0)])
        elif name == "H01":
            out[name] = obj["H"][:, 0, 1].sum(0)
        elif name == "HH_A":
            out[name] = _outer_sum(obj["H"][:, 0, 0], obj["H"][:, 1, 1])
        elif name == "HH_B":
            out[name] = _outer_sum(obj["H"][:, 0, 1], obj["H"][:, 0, 1])
        elif name == "HZ_D0":
            out[name] = _outer_sum(obj["H"][:, 0, 0], zz[:, 1])
        elif name == "HZ_D1":
            out[name] = _outer_sum(obj["H"][:, 1, 1], zz[:, 0])
        elif name == "HZ_F":
            out[name] = _outer_sum(obj["H"][:, 0, 1], z0[:, :, None] * z1[:, None, :])
        elif name == "P0":
            out[name] = _outer_sum(obj["dH"][:, 0, 1, 1], z0)
        elif name == "P1":
            out[name] = _outer_sum(obj["dH"][:, 1, 0, 0], z1)
        elif name == "Q0":
            out[name] = _outer_sum(obj["dH"][:, 0, 0, 1], z1)
        elif name == "Q1":
            out[name] = _outer_sum(obj["dH"][:, 1, 1, 0], z0)
        elif name in ("R0", "R1"):
            i = 0 if name == "R0" else 1
            out[name] = obj["ddIH"][:, i, i, 1 - i, 1 - i].sum(0)
        elif name[0] in "STU":
            i = 0 if name[1] == "0" else 1
            j = 1 - i
            idx = {"S": (i, i, j, j), "T": (i, j, i, j), "U": (i, j, j, i)}[name[0]]
            out[name] = obj["ddIIH"][(slice(None),) + idx].sum(0)
        else:  # pragma: no cover - internal consistency
            raise KeyError(name)
    return out


def _estimate(stat: str, m: dict, n: int) -> np.ndarray:
    """One statistic from the batch means ``m`` of the raw moments (fan-in width n)."""
    sym = lambda T: 0.5 * (T + T.transpose(2, 3, 0, 1))  # noqa: E731
    if stat == "K+G1":
        return 0.5 * (m["zz"][0] + m["zz"][1])
    if stat == "Theta+Theta1":
        return 0.5 * (m["Hd"][0] + m["Hd"][1])
    if stat == "V":
        g0, g1 = m["zz"]
        return n * (sym(m["zzzz"]) - sym(np.multiply.outer(g0, g1)))
    if stat == "A":
        h0, h1 = m["Hd"]
        return n * (sym(m["HH_A"]) - sym(np.multiply.outer(h0, h1)))
    if stat == "B":
        M = m["HH_B"] - np.multiply.outer(m["H01"], m["H01"])    # [α1,α2,α3,α4]
        M = 0.5 * (M + M.transpose(1, 0, 3, 2))                  # + pattern (1,0,1,0)
        return n * M.transpose(0, 2, 1, 3)                        # B[α1,α3,α2,α4]
    if stat == "D":
        h0, h1 = m["Hd"]
        g0, g1 = m["zz"]
        return n * 0.5 * ((m["HZ_D0"] - np.multiply.outer(h0, g1))
                          + (m["HZ_D1"] - np.multiply.outer(h1, g0)))
    if stat == "F":
        M = m["HZ_F"] - np.multiply.outer(m["H01"], m["z0z1"])  # Cov(H01_{α1α2}, z0_{α3} z1_{α4})
        M = 0.5 * (M + M.transpose(1, 0, 3, 2))
        return n * M.transpose(0, 2, 1, 3)                        # F[α1,α3,α2,α4]
    if stat in ("P", "Q", "R", "S"):
        return n * 0.5 * (m[stat + "0"] + m[stat + "1"])
    if stat == "T":  # T[α1,α3,α4,α2] = n E[ddIIH_{0101;α1α2α3α4}]
        return n * 0.5 * (m["T0"] + m["T1"]).transpose(0, 2, 3, 1)
    if stat == "U":  # U[α1,α4,α2,α3] = n E[ddIIH_{0110;α1α2α3α4}]
        return n * 0.5 * (m["U0"] + m["U1"]).transpose(0, 3, 1, 2)
    raise KeyError(stat)  # pragma: no cover


def check_counts(samples, batches, chunk) -> None:
    """InputError unless ``samples`` and ``batches`` are integers with 2 ≤ batches ≤ samples and
    ``chunk`` is None or a positive integer (the sampler's and the trainer's run sizes)."""
    for name, v in (("samples", samples), ("batches", batches)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise InputError(f"{name} must be an integer; got {v!r}")
    if batches < 2:
        raise InputError(f"batches must be >= 2 for a standard error; got {batches}")
    if samples < batches:
        raise InputError(f"samples ({samples}) must be >= batches ({batches})")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer))
                              or chunk < 1):
        raise InputError(f"chunk must be a positive integer; got {chunk!r}")


def batch_sizes(samples: int, batches: int) -> list[int]:
    q, r = divmod(samples, batches)
    return [q + (1 if i < r else 0) for i in range(batches)]


def bytes_per_network(widths, N: int, needs: set) -> int:
    """A rough upper bound of the working memory per network (for the default chunk)."""
    n = max(widths[1:-1] or [2])
    A = 2 * N
    cols = 1 + A
    if "dH" in needs or "ddIH" in needs:
        cols += A * A
    if "ddIH" in needs:
        cols += 2 * A ** 3
    if "ddIIH" in needs:
        cols += A * A + 3 * A ** 3
    per_layer = n * N * cols * 8
    return 8 * parameter_count(widths) * 2 + 4 * per_layer * len(widths) + 8 * 4096


#: (count, number of input indices) of each raw moment of :func:`_moment_sums`
_MOMENT_SHAPES = {"zz": (2, 2), "zzzz": (1, 4), "z0z1": (1, 2), "Hd": (2, 2), "H01": (1, 2), "HH_A": (1, 4),
                  "HH_B": (1, 4), "HZ_D0": (1, 4), "HZ_D1": (1, 4), "HZ_F": (1, 4)}


def _moment_entries(name: str, N: int) -> int:
    count, power = _MOMENT_SHAPES.get(name, (1, 4))   # P0 … U1: four input indices
    return count * N ** power


def default_chunk(widths, N: int, needs: set) -> int:
    """Networks per vectorised chunk when none is given: about 256 MB of working memory."""
    return int(max(1, min(4096, 256 * 2 ** 20 // bytes_per_network(widths, N, needs))))


def sample_memory(n_inputs: int, n0: int, width: int, depth: int, stats=DEFAULT_STATS, *, batches: int = 30,
                  chunk: int | None = None, output: str | None = None) -> int:
    """Estimated peak memory in bytes of :func:`sample` for N = ``n_inputs`` inputs of dimension
    ``n0``: the chunk of networks in flight (``chunk`` × a bound of one network's working memory),
    the running sums of the raw moments per layer, every batch's estimates (``batches`` × depth ×
    Σ_stats N² or N⁴ float64: four-index statistics cost 8 N⁴ bytes each), mean and stderr, and,
    with ``output="json"``, about 96 bytes per written number (nested lists, then the text).

    >>> sample_memory(60, 3, 32, 3, ("G", "V")) > 2 ** 30
    True
    """
    stats = parse_stats(stats)
    N, L = int(n_inputs), int(depth)
    widths = layer_widths(int(n0), int(width), L)
    needs = set().union(*(_NEEDS[s] for s in stats))
    moments = set().union(*(_MOMENTS[s] for s in stats))
    per_network = bytes_per_network(widths, N, needs)
    chunk = default_chunk(widths, N, needs) if chunk is None else int(chunk)
    # a statistic has as many input indices as its largest raw moment
    entries = sum(N ** max(_MOMENT_SHAPES.get(m, (1, 4))[1] for m in _MOMENTS[s]) for s in stats)
    moment_entries = sum(_moment_entries(m, N) for m in moments)
    big = max(_moment_entries(m, N) for m in moments)
    total = chunk * per_network                     # networks in flight
    total += 8 * L * moment_entries + 16 * big      # running sums (+ one chunk's product and sum)
    total += 8 * int(batches) * L * entries         # every batch's estimates
    total += 8 * (2 * L * entries + int(batches) * big)  # mean, stderr; the stacked batch values
    if output == "json":
        total += 96 * 2 * L * entries
    return int(total)


def check_model(model: ModelSpec) -> tuple[np.ndarray, NetworkProgram]:
    """The validated inputs and the forward program of the model's rule file."""
    if not isinstance(model, ModelSpec):
        raise InputError(f"model must be a ModelSpec; got {type(model).__name__}")
    if model.inputs is None:
        raise InputError("the model has no inputs (an (N, n0) array)")
    x = check_inputs(model.inputs)
    if int(model.depth) != model.depth or model.depth < 1:
        raise InputError(f"depth must be an integer >= 1; got {model.depth}")
    if model.depth >= 2 and (int(model.width) != model.width or model.width < 2):
        raise InputError(f"width must be an integer >= 2 for sampling (statistics use neurons "
                         f"0 and 1 of each layer); got {model.width}")
    return x, build_program(model, x.shape[1])


def _package_version() -> str:
    try:
        from .. import __version__
        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


def network_chunks(rng: np.random.Generator, count: int, chunk: int, program: NetworkProgram,
                   x: np.ndarray, derivs: list):
    """Draw ``count`` networks of ``program`` (:mod:`~ntkdiagrams.sampling.interpreter`) from ``rng``
    in chunks of at most ``chunk``; yields (networks in the chunk, ensemble, forward pass with σ
    derivatives ``derivs``)."""
    left = count
    while left > 0:
        c = min(chunk, left)
        ens = program.draw(rng, c, x)
        fw = forward(ens, derivs)
        yield c, ens, fw
        del ens, fw  # before the next chunk is drawn
        left -= c


def chunk_rng(seed: int, index: int) -> np.random.Generator:
    """The stream of chunk ``index`` of a run with ``streams="chunks"`` (module docstring)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), SEED_TAG], spawn_key=(int(index),)))


def chunk_plan(samples: int, batches: int, chunk: int) -> list[list[int]]:
    """Per batch, the sizes of its chunks: a batch of :func:`batch_sizes` split into chunks of at
    most ``chunk`` networks (as the one-stream loop splits it).

    >>> chunk_plan(10, 2, 3)
    [[3, 2], [3, 2]]
    """
    return [[min(chunk, b - a) for a in range(0, b, chunk)] for b in batch_sizes(samples, batches)]


def chunk_sums(program: NetworkProgram, x: np.ndarray, derivs: list, seed: int, index: int, count: int,
               needs: frozenset, moments: tuple) -> list[dict]:
    """One task: draw chunk ``index`` (``count`` networks, from :func:`chunk_rng`), run it forward,
    and return per layer ℓ = 1…L the sums over its networks of the raw moments ``moments``."""
    ens = program.draw(chunk_rng(seed, index), int(count), x)
    fw = forward(ens, derivs)
    out = []
    for ell in range(1, len(program.widths)):
        obj = layer_objects(ens, fw, ell, H=bool(needs), dH="dH" in needs, ddIH="ddIH" in needs,
                            ddIIH="ddIIH" in needs, ddIH_neurons=((0, 1, 1), (1, 0, 0)))
        out.append(_moment_sums(obj, moments))
        del obj
    return out


def chunk_requirements(stats) -> tuple[frozenset, tuple, int]:
    """(per-network objects, raw moments, highest σ derivative) that :func:`chunk_sums` needs for
    ``stats`` (any form :func:`parse_stats` takes)."""
    stats = parse_stats(stats)
    needs = set().union(*(_NEEDS[s] for s in stats))
    moments = tuple(sorted(set().union(*(_MOMENTS[s] for s in stats))))
    order = 3 if "ddIH" in needs else 2 if needs & {"dH", "ddIIH"} else 1 if needs else 0
    return frozenset(needs), moments, order


def add_sums(a: list[dict], b: list[dict]) -> list[dict]:
    """The moment sums of two chunks of one batch, added (a first: the order is the chunks')."""
    return [{k: x[k] + y[k] for k in y} for x, y in zip(a, b)]


def batch_estimate(sums: list[dict], count: int, stats: tuple, fan_in: list) -> list[dict]:
    """Per layer, every statistic of one batch of ``count`` networks from its moment sums."""
    return [{s: _estimate(s, {k: v / count for k, v in sums[ell].items()}, fan_in[ell]) for s in stats}
            for ell in range(len(sums))]


def _run_chunks(executor, program, x, derivs, seed, plan, needs, moments, stats, fan_in, reporter, total, t0):
    """Batches of chunk tasks on ``executor`` (:mod:`ntkdiagrams.executors`): per batch, its chunks'
    :func:`chunk_sums` added in order (a chain of :func:`add_sums`), then :func:`batch_estimate`.
    Returns the finished batches (a prefix, also after Ctrl-C) and whether all finished."""
    window = 2 * executor.workers + 2   # chunks in flight: enough to keep every worker busy
    handles, outstanding = [], []       # batch estimates; (chunk handle, networks)
    submitted = 0
    index = 0
    try:
        for sizes in plan:
            acc = None
            for c in sizes:
                h = executor.submit(chunk_sums, program, x, derivs, int(seed), index, c, frozenset(needs),
                                    tuple(moments))
                index += 1
                acc = h if acc is None else executor.submit(add_sums, acc, h)
                outstanding.append((h, c))
                submitted += c
                left = executor.wait_some([o[0] for o in outstanding], window)
                outstanding = [o for o in outstanding if any(o[0] is u for u in left)]
                if reporter:
                    reporter(submitted - sum(o[1] for o in outstanding), total, time.perf_counter() - t0)
            handles.append(executor.submit(batch_estimate, acc, sum(sizes), tuple(stats), list(fan_in)))
            del acc
        per_batch = []
        for h in handles:
            per_batch.append(executor.result(h))
        return per_batch, True
    except KeyboardInterrupt:
        executor.cancel([o[0] for o in outstanding] + handles)
        per_batch = []
        for h in handles:
            if not executor.done(h):
                break
            per_batch.append(executor.result(h))
        return per_batch, False


def sample(model: ModelSpec, samples: int, *, seed: int = 0, batches: int = 30,
           stats=DEFAULT_STATS, chunk: int | None = None,
           progress: bool | Callable[[int, int, float], None] = False,
           allow_partial: bool = False, streams: str = "one", scheduler=None) -> dict:
    """Estimate the statistics of ``model`` from ``samples`` sampled networks.

    Parameters
    ----------
    model: the network and data set (docs/conventions.md §1): the rule file ``model.rules`` (default
        the MLP) with hyper-parameters by symbol name, built by the interpreter of
        :mod:`ntkdiagrams.sampling.interpreter`; hidden width ``model.width`` (or r_ℓ times it),
        output layer of width 2 (only neurons 0 and 1 of any layer are used).
    samples: number of networks S (≥ batches).
    seed: seed of the network stream (see module docstring).
    batches: number b of batches for the batch-means standard errors (≥ 2; 30 by default).
    stats: rule-file names (K, G1, Theta, Theta1, V, A, …), a comma-separated string, or
        ``"all"`` (see :func:`parse_stats`).
    chunk: networks processed at once (default: sized for ≈ 256 MB of working memory).
    progress: ``True`` for a progress line on stderr (runs longer than 2 s), or a callable
        ``progress(done, total, elapsed_seconds)``.
    allow_partial: on KeyboardInterrupt return the batches finished so far with
        ``meta["complete"] = False`` instead of re-raising.
    streams: ``"one"`` (default: one stream for the run; the networks do not depend on
        ``chunk``) or ``"chunks"`` (one stream per chunk; see the module docstring).
    scheduler: None (default: this process), ``"local"``, ``"local:W"``, a dask scheduler address
        or a :class:`distributed.Client` (:mod:`ntkdiagrams.executors`; the ``dask`` extra): network
        chunks run as dask tasks, with ``streams="chunks"``; the result equals that of
        ``streams="chunks"`` in one process for the same seed, samples, batches and chunk.

    Returns
    -------
    ``{"meta": {...model.meta(), "rules", "params", "widths", "samples", "seed", "batches",
    "complete", "stats", "estimates", "fan_in", "package_version"}, "layers": [{"layer": ℓ, stat: {"mean": ndarray,
    "stderr": ndarray}, ...}, ...]}`` with stat the stored names of :data:`ALL_STATS` (K and G1
    come back as "K+G1", Theta and Theta1 as "Theta+Theta1"; ``meta["estimates"]`` says what
    they estimate); tensors are N×N or N×N×N×N in the storage order of
    docs/conventions.md §3 (see the module docstring).
    """
    x, program = check_model(model)
    stats = parse_stats(stats)
    check_counts(samples, batches, chunk)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer; got {seed!r}")

    L = int(model.depth)
    N = x.shape[0]
    widths = program.widths
    fan_in = widths[:L]
    needs = set().union(*(_NEEDS[s] for s in stats))
    moments = sorted(set().union(*(_MOMENTS[s] for s in stats)))
    order = 3 if "ddIH" in needs else 2 if needs & {"dH", "ddIIH"} else 1 if needs else 0
    derivs = activation_derivatives(model.activation, order)
    if chunk is None:
        chunk = default_chunk(widths, N, needs)
    if streams not in STREAMS:
        raise InputError(f"streams must be one of {', '.join(STREAMS)}; got {streams!r}")
    if scheduler is not None:
        streams = "chunks"  # one stream cannot be split between workers (module docstring)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), SEED_TAG]))

    reporter = make_reporter(progress)
    t0 = time.perf_counter()
    per_batch: list[list[dict]] = []  # per batch: per layer dict stat -> estimate
    done = 0
    complete = True
    if streams == "chunks":
        from ..executors import open_executor

        try:
            with open_executor(scheduler) as executor:
                per_batch, complete = _run_chunks(executor, program, x, derivs, seed,
                                                  chunk_plan(int(samples), int(batches), int(chunk)), needs,
                                                  moments, stats, fan_in, reporter, int(samples), t0)
        finally:
            if reporter:
                reporter(None, int(samples), time.perf_counter() - t0)
        if not complete and not allow_partial:
            raise KeyboardInterrupt
    else:
        try:
            for bsize in batch_sizes(int(samples), int(batches)):
                sums = [dict() for _ in range(L)]
                for c, ens, fw in network_chunks(rng, bsize, chunk, program, x, derivs):
                    for ell in range(1, L + 1):
                        obj = layer_objects(ens, fw, ell, H=bool(needs), dH="dH" in needs,
                                            ddIH="ddIH" in needs, ddIIH="ddIIH" in needs,
                                            ddIH_neurons=((0, 1, 1), (1, 0, 0)))
                        for k, v in _moment_sums(obj, moments).items():
                            sums[ell - 1][k] = sums[ell - 1].get(k, 0.0) + v
                        del obj
                    del ens, fw
                    done += c
                    if reporter:
                        reporter(done, int(samples), time.perf_counter() - t0)
                per_batch.append([{s: _estimate(s, {k: v / bsize for k, v in sums[ell].items()},
                                                fan_in[ell]) for s in stats} for ell in range(L)])
        except KeyboardInterrupt:
            if not allow_partial:
                raise
            complete = False
        finally:
            if reporter:
                reporter(None, int(samples), time.perf_counter() - t0)

    nb = len(per_batch)
    used = sum(batch_sizes(int(samples), int(batches))[:nb])
    layers = []
    for ell in range(L):
        entry: dict = {"layer": ell + 1}
        for s in stats:
            if nb:
                vals = np.stack([per_batch[b][ell][s] for b in range(nb)])
                mean = vals.mean(0)
                err = vals.std(0, ddof=1) / np.sqrt(nb) if nb > 1 else np.full_like(mean, np.nan)
            else:
                shape = (N, N) if s in SAMPLED_SUMS else (N,) * 4
                mean = np.full(shape, np.nan)
                err = np.full(shape, np.nan)
            entry[s] = {"mean": mean, "stderr": err}
        layers.append(entry)
    meta = dict(model.meta())
    meta.update(program.meta())
    meta.update({"samples": int(used), "samples_requested": int(samples), "seed": int(seed),
                 "batches": int(nb), "batches_requested": int(batches), "complete": complete,
                 "stats": list(stats),
                 "estimates": {s: _ESTIMATES[s] for s in stats if s in _ESTIMATES}, "fan_in": fan_in, "output_width": 2,
                 "elapsed_s": round(time.perf_counter() - t0, 3),
                 "package_version": _package_version(), "method": "monte-carlo"})
    if streams == "chunks":  # what it takes to draw the same networks again
        meta.update({"streams": "chunks", "chunk": int(chunk)})
    return {"meta": meta, "layers": layers}


def make_reporter(progress):
    if callable(progress):
        def call(done, total, elapsed):
            if done is not None:
                progress(done, total, elapsed)
        return call
    if not progress:
        return None
    state = {"last": 0.0, "printed": False}

    def report(done, total, elapsed):
        if done is None:
            if state["printed"]:
                sys.stderr.write("\n")
                sys.stderr.flush()
            return
        if elapsed < 2.0 or (elapsed - state["last"] < 1.0 and done < total):
            return
        state["last"] = elapsed
        eta = elapsed * (total - done) / max(done, 1)
        sys.stderr.write(f"\rsample: {done}/{total} networks, {elapsed:.1f} s, eta {eta:.0f} s  ")
        sys.stderr.flush()
        state["printed"] = True
    return report


# ----------------------------------------------------------------------------- files

def _jsonable(a):
    arr = np.asarray(a, dtype=float)
    return np.where(np.isfinite(arr), arr, None).tolist() if not np.isfinite(arr).all() \
        else arr.tolist()


def save_result(result: dict, path: str) -> None:
    """Write a result of :func:`sample` as JSON (nested lists, NaN → null) or npz
    (keys ``layer{ℓ}/{stat}/mean`` and ``…/stderr`` plus ``meta``, a JSON string).
    The file is written to a temporary name in the same folder and renamed (``os.replace``), so
    it is never half-written, also when writing fails or is interrupted.  A folder that does
    not exist or cannot be written raises :class:`~ntkdiagrams.errors.InputError`."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".json", ".npz"):
        raise InputError(f"output file {path!r} must end in .json or .npz")
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        if ext == ".json":
            doc = {"meta": result["meta"], "layers": [
                {k: ({"mean": _jsonable(v["mean"]), "stderr": _jsonable(v["stderr"])}
                     if isinstance(v, dict) else v) for k, v in entry.items()}
                for entry in result["layers"]]}
            fh.write(json.dumps(doc, indent=1).encode())
        else:
            arrays = {"meta": np.array(json.dumps(result["meta"]))}
            for entry in result["layers"]:
                for k, v in entry.items():
                    if isinstance(v, dict):
                        arrays[f"layer{entry['layer']}/{k}/mean"] = np.asarray(v["mean"])
                        arrays[f"layer{entry['layer']}/{k}/stderr"] = np.asarray(v["stderr"])
            np.savez(fh, **arrays)


def load_result(path: str) -> dict:
    """Read a file written by :func:`save_result` back into the structure of :func:`sample`.

    Raises :class:`~ntkdiagrams.errors.InputError` naming the file and what is wrong for a
    missing, unreadable or undecodable file, a file of another layout (a prediction written by
    ``evaluate``, say) and entries that are not numeric arrays of one shape."""
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as f:
                if not hasattr(f, "files"):
                    raise InputError(f"{path}: a single .npy array, not an .npz result of 'sample'")
                if "meta" not in f.files:
                    raise InputError(f"{path}: not a result of 'sample' (no 'meta' entry)")
                meta = json.loads(str(f["meta"]))
                layers: dict = {}
                for key in f.files:
                    if key == "meta":
                        continue
                    parts = key.split("/")
                    if len(parts) != 3 or not parts[0].startswith("layer") or parts[2] not in ("mean", "stderr"):
                        raise InputError(f"{path}: unexpected entry {key!r} (expected layer<l>/<stat>/mean|stderr)")
                    lay, stat, kind = parts
                    ell = int(lay[len("layer"):])
                    layers.setdefault(ell, {"layer": ell}).setdefault(stat, {})[kind] = f[key]
            doc = {"meta": meta, "layers": [layers[k] for k in sorted(layers)]}
        else:
            with open(path, "r", encoding="utf-8") as fh:
                doc = json.load(fh)
    except InputError:
        raise
    except (OSError, ValueError, KeyError, EOFError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise InputError(f"{path}: cannot read a Monte Carlo result ({why})") from None
    except Exception as exc:  # zipfile.BadZipFile and other decoders' errors
        raise InputError(f"{path}: cannot read a Monte Carlo result ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("layers"), list):
        raise InputError(f"{path}: not a result of 'sample' (no 'layers' list)")
    meta = doc.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise InputError(f"{path}: 'meta' is not a table")
    if isinstance(meta, dict) and meta.get("kind") == "prediction":
        raise InputError(f"{path}: a prediction written by 'evaluate', not a Monte Carlo result of 'sample'")
    for entry in doc["layers"]:
        if not isinstance(entry, dict) or isinstance(entry.get("layer"), bool) \
                or not isinstance(entry.get("layer"), (int, np.integer)):
            raise InputError(f"{path}: every entry of 'layers' must be a table with an integer 'layer'")
        for k, v in entry.items():
            if isinstance(v, dict):
                try:
                    entry[k] = {kk: np.array(vv, dtype=float) for kk, vv in v.items()}  # null → NaN
                except (TypeError, ValueError) as exc:
                    raise InputError(f"{path}: layer {entry['layer']} {k}: not a numeric array ({exc})") from None
    return _rename_deprecated(doc)


def _rename_deprecated(doc: dict) -> dict:
    """Files of earlier versions name K+G1 "G" and Theta+Theta1 "NTK": rename them (in place)."""
    meta = doc.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("stats"), list):
        meta["stats"] = [DEPRECATED_NAMES.get(s, s) for s in meta["stats"]]
    for entry in doc["layers"]:
        if not isinstance(entry, dict):
            continue
        for old, new in DEPRECATED_NAMES.items():
            if old in entry and new not in entry:
                entry[new] = entry.pop(old)
    return doc
