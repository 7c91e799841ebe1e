"""The recursions iterated block by block, with the per-layer tensors in zarr arrays on disk.

The in-memory evaluator (:func:`ntkdiagrams.numerics.evaluate.evaluate`) holds every tensor of a
layer whole: a four-index tensor is 8 N⁴ bytes (N = 128: 2.1 GB per tensor and layer; the
four-point Gaussian tensor ⟨σσσσ⟩_K another as much; the index tuples of its quadrature 4× more).
Here every tensor of layer ℓ is a zarr array of blocks of B inputs per axis
(:data:`DEFAULT_BLOCK`), and layer ℓ+1 is made by tasks that each touch a few blocks:

1. Gaussian tensors.  For every expectation E[a₁…a_k] = ⟨f₁(z_{a₁}) ⋯ f_k(z_{a_k})⟩_{K^{(ℓ)}} of the
   layer's recursions (shared between terms and statistics up to a transposition, as in
   :class:`~ntkdiagrams.numerics.evaluate.GaussianCache`), one task per *canonical* block (block
   indices sorted within each group of identical factors) computes the block's index tuples
   (sorted within the groups, each distinct tuple once) with the quadrature of
   :func:`ntkdiagrams.numerics.gaussian.tensor.tensor_values`, and writes the block and its
   transposes (the blocks of the permuted block indices).  A two-point tensor of smooth factors
   is one task: the Hermite series over all pairs (:mod:`ntkdiagrams.numerics.gaussian.series`),
   N² numbers, as in memory.
2. Contractions.  Every term of a recursion is c · Π factors over target indices only
   (:class:`~ntkdiagrams.numerics.evaluate.CompiledRecursion`: a repeated label is a diagonal, no
   index is summed), so output block (I₁…I_m) of T^{(ℓ+1)} is Σ_terms c · einsum of the factors'
   blocks (I_{a}…) of layer ℓ's tensors, the Gaussian tensors and the input Gram matrix: one task
   per output block, terms added in the order of the in-memory evaluator.

Layer ℓ's tensors and Gaussian tensors are removed from disk once layer ℓ+1 is written (those
requested stay).  The numbers are those of the in-memory path up to rounding (the same quadrature
on the same index tuples; products of the factors in another order), within 1e-12 relative.

Tasks run on an executor (:mod:`ntkdiagrams.executors`): in this process, or as dask tasks of a
cluster whose workers can all read and write the output folder (one machine, or a shared file
system).  Memory per task: a few blocks (B⁴ · 8 bytes = 8 MB at B = 32) and the quadrature of one
block's tuples; the driver holds only the N × N kernel.  Not supported here: activations with kinks
whose blob sums are integrated by parts (``relu`` and the like: the Hermite contraction needs whole
tensors; an UnsupportedError says so).
"""
from __future__ import annotations

import itertools
import math
import os
import shutil
import string
import tempfile
from typing import Callable, Sequence

import numpy as np
import sympy as sp

from ..errors import InputError, NumericsError, UnsupportedError
from ..files import atomic_folder
from ..settings import Settings
from .gaussian import Quadrature
from .gaussian.series import applicable as series_applicable
from .gaussian.tensor import TUPLES_PER_BATCH, check_kernel, expectation_tensor, prepare_factors, tensor_values

__all__ = ["DEFAULT_BLOCK", "contract_block", "evaluate_blocked", "gaussian_block", "open_zarr_result", "plan_terms",
           "whole_series"]

#: inputs per block along every axis (a four-index block: 32⁴ · 8 bytes = 8 MB)
DEFAULT_BLOCK = 32


def _zarr():
    try:
        import zarr
    except ImportError:
        raise InputError("a blocked evaluation (--out FILE.zarr or a scheduler) needs zarr, an optional "
                         "extra: pip install 'ntkdiagrams[dask]'") from None
    return zarr


# ----------------------------------------------------------------------------- plans (pure data)

def _canonical(funcs: tuple) -> tuple[list, tuple]:
    order = sorted(range(len(funcs)), key=lambda s: sp.srepr(funcs[s]))
    return order, tuple(funcs[s] for s in order)


def plan_terms(rec, hyper: tuple, initial: bool, gauss_ids: dict) -> list:
    """A compiled recursion's terms as data: [(c, [(kind, ref, axes, perm), …]), …] with the
    coefficient c evaluated at ``hyper``; ``kind`` "tensor" (ref: its name), "gram", or "gauss"
    (ref: the id of the canonical expectation in ``gauss_ids``, filled here; axes: the target axes
    of the canonical array's slots; perm: the transpose back to the factor's slot order)."""
    labels = list(rec.labels)
    out = []
    for c, factors in rec.coefficients(hyper, initial):
        facs = []
        for fac in factors:
            if fac.kind in ("tensor", "gram"):
                facs.append((fac.kind, fac.key, tuple(fac.labels), None))
            elif fac.kind == "gauss":
                funcs, labs = fac.key
                order, canon = _canonical(tuple(funcs))
                gid = gauss_ids.setdefault(canon, len(gauss_ids))
                axes = tuple(labels.index(labs[s]) for s in order)   # canonical slot -> target axis
                facs.append(("gauss", gid, axes, tuple(int(i) for i in np.argsort(order))))
            else:
                raise UnsupportedError(f"{rec.rec.tensor}: a blob sum integrated by parts (activation with "
                                       "kinks) is not supported by the blocked evaluator; evaluate in memory")
        out.append((c, facs))
    return out


def _groups(funcs: tuple) -> list[list[int]]:
    """Slots with identical factors (symmetric slots of the expectation)."""
    groups: dict = {}
    for s, f in enumerate(funcs):
        groups.setdefault(f, []).append(s)
    return list(groups.values())


def whole_series(funcs: tuple, degree) -> bool:
    """A two-point tensor of smooth factors (:mod:`ntkdiagrams.numerics.gaussian.series`): computed
    whole, in one task (N² numbers in milliseconds), so that its numbers are the in-memory ones."""
    return degree is None and len(funcs) == 2 and series_applicable(prepare_factors(list(funcs)))


def _slices(bidx: Sequence[int], B: int, N: int) -> tuple:
    return tuple(slice(b * B, min(N, (b + 1) * B)) for b in bidx)


# ----------------------------------------------------------------------------- tasks

def gaussian_block(root: str, path: str, funcs: tuple, K: np.ndarray, bidx: tuple, B: int, degree,
                   settings: Settings) -> int:
    """One task: block ``bidx`` (canonical: sorted within the groups of identical factors) of
    T[a₁…a_k] = E[f₁(z_{a₁}) ⋯ f_k(z_{a_k})], z ~ N(0, K), written with its transposes into the zarr
    array ``path`` of the store ``root``.  Returns the number of distinct tuples computed."""
    zarr = _zarr()
    N, k = K.shape[0], len(funcs)
    facs = prepare_factors(list(funcs))
    sl = _slices(bidx, B, N)
    ranges = [np.arange(s.start, s.stop) for s in sl]
    shape = tuple(len(r) for r in ranges)
    tuples = np.stack([g.ravel() for g in np.meshgrid(*ranges, indexing="ij")], axis=1)
    canon = tuples.copy()
    groups = _groups(funcs)
    for slots in groups:
        if len(slots) > 1:
            canon[:, slots] = np.sort(canon[:, slots], axis=1)
    key = np.ravel_multi_index(canon.T, (N,) * k)
    del tuples, canon
    ukey, inv = np.unique(key, return_inverse=True)
    del key
    uniq = np.stack(np.unravel_index(ukey, (N,) * k), axis=1)
    vals = np.empty(uniq.shape[0])
    with Quadrature(settings) as quad:
        if whole_series(funcs, degree) and shape == (N, N):
            # the whole two-point tensor, as the in-memory evaluator computes it (the series'
            # orders depend on all inputs: a block alone would round differently)
            block = expectation_tensor(list(funcs), K, quadrature=quad)
        else:
            for a in range(0, uniq.shape[0], TUPLES_PER_BATCH):
                vals[a:a + TUPLES_PER_BATCH] = tensor_values(facs, K, uniq[a:a + TUPLES_PER_BATCH], degree, "auto",
                                                             quad)
            block = vals[np.ravel(inv)].reshape(shape)
    arr = zarr.open_array(store=root, path=path, mode="r+")
    written = set()
    for perm in itertools.product(*[list(itertools.permutations(g)) for g in groups]):
        p = list(range(k))
        for g, q in zip(groups, perm):
            for s, t in zip(g, q):
                p[s] = t
        target = tuple(bidx[p[s]] for s in range(k))
        if target not in written:
            written.add(target)
            arr[_slices(target, B, N)] = np.transpose(block, p)
    return int(uniq.shape[0])


def contract_block(root: str, out_path: str, prev: dict, gauss: dict, gram: np.ndarray, terms: list,
                   rank: int, bidx: tuple, B: int, N: int):
    """One task: block ``bidx`` of a tensor of layer ℓ+1, Σ_terms c · einsum(factor blocks), written
    to ``out_path``; ``prev`` / ``gauss``: zarr paths of layer ℓ's tensors / of the Gaussian tensors
    by id.  Returns (None or the first non-finite component as (global indices, value), bytes read
    from the store)."""
    zarr = _zarr()
    sl = _slices(bidx, B, N)
    shape = tuple(s.stop - s.start for s in sl)
    letters = string.ascii_lowercase
    target = letters[:rank]
    opened: dict = {}
    read: dict = {}

    def block(path, slices):
        key = (path, tuple((s.start, s.stop) for s in slices))   # (slices are unhashable before 3.12)
        if key not in read:
            if path not in opened:
                opened[path] = zarr.open_array(store=root, path=path, mode="r")
            read[key] = opened[path][slices]
        return read[key]

    out = np.zeros(shape)
    with np.errstate(over="ignore", invalid="ignore"):
        for c, factors in terms:
            arrays, subs = [], []
            for kind, ref, axes, perm in factors:
                if kind == "tensor":
                    arrays.append(block(prev[ref], tuple(sl[a] for a in axes)))
                    subs.append("".join(letters[a] for a in axes))
                elif kind == "gram":
                    arrays.append(gram[sl[axes[0]], sl[axes[1]]])
                    subs.append("".join(letters[a] for a in axes))
                else:  # gauss: the canonical block (einsum reads its axes in their own order)
                    arrays.append(block(gauss[ref], tuple(sl[a] for a in axes)))
                    subs.append("".join(letters[a] for a in axes))
            missing = set(range(rank)) - {letters.index(ch) for s in subs for ch in s}
            for a in sorted(missing):
                arrays.append(np.ones(shape[a]))
                subs.append(letters[a])
            if arrays:
                out += c * np.einsum(",".join(subs) + "->" + target, *arrays, optimize=True)
            else:
                out += c
    arr = zarr.open_array(store=root, path=out_path, mode="r+")
    arr[tuple(slice(s.start, s.stop) for s in sl)] = out
    nbytes = sum(a.nbytes for a in read.values())
    bad = ~np.isfinite(out)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        return (tuple(s.start + i for s, i in zip(sl, idx)), float(out[idx])), nbytes
    return None, nbytes


# ----------------------------------------------------------------------------- driver

def _run(executor, calls: list, window: int) -> list:
    """Submit ``calls`` [(fn, args)], at most ``window`` unfinished at a time; their results in order."""
    handles, live = [], []
    for fn, args in calls:
        h = executor.submit(fn, *args)
        handles.append(h)
        live = executor.wait_some(live + [h], window)
    return [executor.result(h) for h in handles]


def _blocks(rank: int, nb: int):
    return itertools.product(range(nb), repeat=rank)


def _canonical_blocks(funcs: tuple, nb: int):
    groups = _groups(funcs)
    for bidx in itertools.product(range(nb), repeat=len(funcs)):
        if all(list(bidx[s] for s in g) == sorted(bidx[s] for s in g) for g in groups):
            yield bidx


def evaluate_blocked(compiled: dict, extras: dict, names: Sequence[str], gauss: str, hypers: list,
                     x: np.ndarray, *, degree=None, settings: Settings, scheduler=None, out: str | None = None,
                     block: int | None = None, meta: dict | None = None,
                     progress: Callable = lambda *a: None) -> tuple[list[dict], list[dict]]:
    """Layers 1…L (``len(hypers)``) of the compiled recursions, block by block (module docstring).

    ``compiled``: {tensor: CompiledRecursion} of every tensor the recursions need (the Gaussian
    tensor ``gauss`` among them), in the order of evaluation; ``extras``: evaluated alongside, not
    fed back; ``names``: the requested tensors; ``hypers[ℓ−1]``: the coefficient arguments of the
    map that makes layer ℓ.  ``out``: a FILE.zarr folder (written atomically: to a temporary folder
    renamed at the end) with the arrays ``layer{ℓ}/{tensor}`` and ``meta`` in the group's attributes;
    the layer dicts returned then hold the zarr arrays (read-only).  Without ``out`` the tensors go
    to a temporary folder and come back as numpy arrays.

    Returns (layer dicts, figures per layer: {"layer", "gauss_tasks", "tuples" (distinct index tuples
    of the quadrature), "contract_tasks", "bytes_written" (tensors and Gaussian tensors of the layer),
    "bytes_read" (blocks the contraction tasks read)})."""
    from ..executors import open_executor

    zarr = _zarr()
    N, n0 = x.shape
    B = int(block or min(N, DEFAULT_BLOCK))
    if isinstance(block, bool) or B < 1:
        raise InputError(f"block must be a positive number of inputs; got {block!r}")
    nb = math.ceil(N / B)
    gram = x @ x.T / n0
    keep = list(dict.fromkeys(list(names) + list(extras)))
    depth = len(hypers)
    if out is not None and not str(out).endswith(".zarr"):
        raise InputError(f"{out}: a blocked evaluation writes a zarr folder; the name must end in .zarr")
    context = atomic_folder(out) if out is not None else tempfile.TemporaryDirectory(prefix="ntkdiagrams-blocked-")
    with context as tmp, open_executor(scheduler) as executor:
        root = os.path.abspath(tmp)
        task_settings = settings if executor.kind == "in-process" else settings.with_(threads=1)
        window = 2 * executor.workers + 2
        group = zarr.open_group(root, mode="w")
        group.attrs["meta"] = dict(meta or {}, block=B, inputs=int(N))

        def create(path, rank):
            zarr.open_array(store=root, path=path, mode="w", shape=(N,) * rank, chunks=(min(B, N),) * rank,
                            dtype="f8")

        figures: list[dict] = []

        def layer(ell: int, prev_paths: dict, gauss_paths: dict, initial: bool) -> dict:
            """Every tensor of layer ``ell`` (compiled and extras) from the paths of layer ell−1's."""
            fig = {"layer": ell, "gauss_tasks": 0, "tuples": 0, "contract_tasks": 0, "bytes_written": 0,
                   "bytes_read": 0}
            figures.append(fig)
            ids: dict = {}
            plans = {t: plan_terms(c, hypers[ell - 1], initial, ids) for t, c in {**compiled, **extras}.items()}
            if ids:
                K = np.asarray(zarr.open_array(store=root, path=prev_paths[gauss], mode="r")[...])
                K = check_kernel(0.5 * (K + K.T))
                calls = []
                for canon, gid in ids.items():
                    gauss_paths[gid] = f"work/gauss{ell}/{gid}"
                    create(gauss_paths[gid], len(canon))
                    if whole_series(canon, degree):  # one task, the in-memory numbers (N² of them)
                        calls.append((gaussian_block, (root, gauss_paths[gid], canon, K, (0, 0), N, degree,
                                                       task_settings)))
                        continue
                    calls += [(gaussian_block, (root, gauss_paths[gid], canon, K, b, B, degree, task_settings))
                              for b in _canonical_blocks(canon, nb)]
                fig["gauss_tasks"] = len(calls)
                fig["bytes_written"] += 8 * sum(N ** len(canon) for canon in ids)
                try:
                    fig["tuples"] = sum(_run(executor, calls, window))
                except NumericsError as exc:
                    raise NumericsError(f"layer {ell}: {exc}", layer=ell, inputs=exc.inputs, reason=exc.reason,
                                        growth=exc.growth) from None
            paths = {}
            for t, c in {**compiled, **extras}.items():
                rank = len(c.labels)
                paths[t] = f"layer{ell}/{t}" if t in keep else f"work/layer{ell}/{t}"
                create(paths[t], rank)
                calls = [(contract_block, (root, paths[t], prev_paths, gauss_paths, gram, plans[t], rank, b, B, N))
                         for b in _blocks(rank, nb)]
                fig["contract_tasks"] += len(calls)
                fig["bytes_written"] += 8 * N ** rank
                for bad, nbytes in _run(executor, calls, window):
                    fig["bytes_read"] += nbytes
                    if bad is not None:
                        idx, value = bad
                        raise NumericsError(
                            f"layer {ell}: {t}{list(idx)} = {value} is not finite: the recursion overflowed "
                            "(a kernel growing without bound: choose a smaller C_W, fewer layers or a "
                            "slower-growing activation)", layer=ell, statistic=t, inputs=idx, reason="not finite")
            return paths

        paths = layer(1, {}, {}, True)
        for ell in range(2, depth + 1):
            prev = {t: p for t, p in paths.items() if t in compiled}
            paths = layer(ell, prev, {}, False)
            shutil.rmtree(os.path.join(root, "work", f"gauss{ell}"), ignore_errors=True)
            shutil.rmtree(os.path.join(root, "work", f"layer{ell - 1}"), ignore_errors=True)
            progress(ell, depth)
        shutil.rmtree(os.path.join(root, "work"), ignore_errors=True)
        if out is None:
            return [{"layer": ell, **{t: np.asarray(zarr.open_array(store=root, path=f"layer{ell}/{t}",
                                                                    mode="r")[...]) for t in keep}}
                    for ell in range(1, depth + 1)], figures
    return open_zarr_result(out, keep, depth), figures


def open_zarr_result(path: str, names: Sequence[str], depth: int) -> list[dict]:
    """The layer dicts of a FILE.zarr written by :func:`evaluate_blocked`: zarr arrays, read-only."""
    zarr = _zarr()
    return [{"layer": ell, **{t: zarr.open_array(store=path, path=f"layer{ell}/{t}", mode="r") for t in names}}
            for ell in range(1, depth + 1)]
