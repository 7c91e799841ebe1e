"""Monte Carlo estimate of a correlator request at concrete neuron indices.

For a request ``E[X_1 … X_k]`` / ``Ec[X_1 … X_k]`` (:mod:`ntkdiagrams.engine.request`) and neuron values
(each neuron index of the request set to 0 or 1: the sampler computes the fields of neurons 0
and 1 of every layer), the estimator is

    full:       m = E[X_1 ⋯ X_k]                      (mean over networks)
    connected:  κ = Σ_π (−1)^{|π|−1} (|π|−1)! Π_{B∈π} E[Π_{m∈B} X_m]   (Möbius over leg partitions)

as an array over the request's distinct input labels (a label repeated in the request is a
diagonal).  Standard errors are batch means (moments inside a cumulant come from the same
batch: an O(1/batch size) bias).  Per-network fields come from
:mod:`ntkdiagrams.sampling.networks`, which shares no code with the engine.
"""
from __future__ import annotations

import string
import time

import numpy as np

from .model import ModelSpec
from ..errors import InputError, UnsupportedError
from .sampler import (SEED_TAG, batch_sizes, check_model, default_chunk, make_reporter,
                         network_chunks)
from .networks import activation_derivatives, layer_objects
from ..combinatorics import set_partitions

_DERIVATIVE_ORDER = {"z": 0, "H": 1, "dH": 2, "ddIIH": 2, "ddIH": 3}


def _subsets_needed(k: int, connected: bool) -> list[tuple]:
    if not connected:
        return [tuple(range(k))]
    out = set()
    for part in set_partitions(list(range(k))):
        out.update(tuple(sorted(b)) for b in part)
    return sorted(out)


def sample_request(request, model: ModelSpec, pattern: dict, samples: int, *, seed: int = 0,
                   batches: int = 20, chunk: int | None = None, progress=False) -> list[dict]:
    """Estimate a request (a :class:`~ntkdiagrams.engine.request.Request` or a
    :class:`~ntkdiagrams.engine.request.RequestResult`) at neuron values ``pattern`` ({index name: 0 or 1}).

    Returns one dict per layer, ``{"layer": ℓ, "mean": array, "stderr": array}``, axes = the
    request's distinct input labels in order of appearance."""
    req = getattr(request, "request", request)
    x, program = check_model(model)
    missing = [str(i) for i in req.neurons if str(i) not in pattern]
    if missing:
        raise InputError(f"pattern gives no value for neuron index(es) {', '.join(missing)} of {req}")
    vals = {i: pattern[str(i)] for i in req.neurons}
    if any(v not in (0, 1) for v in vals.values()):
        raise UnsupportedError(f"the sampler computes neurons 0 and 1 of each layer; pattern {pattern} needs others")
    if batches < 2 or samples < batches:
        raise InputError(f"need batches >= 2 and samples >= batches; got {samples} samples, {batches} batches")
    fields = {leg.field for leg in req.legs}
    unknown = fields - set(_DERIVATIVE_ORDER)
    if unknown:
        raise UnsupportedError(f"the sampler has no per-network estimator for field(s) {sorted(unknown)}")
    order = max(_DERIVATIVE_ORDER[f] for f in fields)
    derivs = activation_derivatives(model.activation, order)
    L, N = int(model.depth), x.shape[0]
    widths = program.widths
    letters = {a: string.ascii_letters[q] for q, a in enumerate(req.labels)}
    k = len(req.legs)
    subsets = _subsets_needed(k, req.connected)
    sub_labels = {B: list(dict.fromkeys(a for m in B for a in req.legs[m].inputs)) for B in subsets}
    einsum = {B: ",".join("Z" + "".join(letters[a] for a in req.legs[m].inputs) for m in B) + "->"
              + "".join(letters[a] for a in sub_labels[B]) for B in subsets}
    triples = sorted({tuple(vals[i] for i in leg.neurons[1:]) for leg in req.legs if leg.field == "ddIH"})
    if chunk is None:
        chunk = default_chunk(widths, N, fields - {"z"})
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), SEED_TAG]))
    report = make_reporter(progress)
    t0 = time.perf_counter()
    per_batch = []
    done = 0
    for bsize in batch_sizes(int(samples), int(batches)):
        sums = [{B: 0.0 for B in subsets} for _ in range(L)]
        for c, ens, fw in network_chunks(rng, bsize, chunk, program, x, derivs):
            for ell in range(1, L + 1):
                obj = layer_objects(ens, fw, ell, H="H" in fields, dH="dH" in fields, ddIH="ddIH" in fields,
                                    ddIIH="ddIIH" in fields, ddIH_neurons=triples or None)
                X = [obj[leg.field][(slice(None),) + tuple(vals[i] for i in leg.neurons)] for leg in req.legs]
                for B in subsets:
                    sums[ell - 1][B] = sums[ell - 1][B] + np.einsum(einsum[B], *[X[m] for m in B])
            done += c
            if report:
                report(done, int(samples), time.perf_counter() - t0)
        per_batch.append([_combine(req, {B: v / bsize for B, v in s.items()}, sub_labels, letters)
                          for s in sums])
    if report:
        report(None, int(samples), time.perf_counter() - t0)
    out = []
    for ell in range(L):
        v = np.stack([b[ell] for b in per_batch])
        out.append({"layer": ell + 1, "mean": v.mean(0), "stderr": v.std(0, ddof=1) / np.sqrt(v.shape[0])})
    return out


def _combine(req, moments: dict, sub_labels: dict, letters: dict) -> np.ndarray:
    k = len(req.legs)
    target = "".join(letters[a] for a in req.labels)
    if not req.connected:
        return moments[tuple(range(k))]
    total = 0.0
    for part in set_partitions(list(range(k))):
        blocks = [tuple(sorted(b)) for b in part]
        r = len(blocks)
        coef = (-1) ** (r - 1) * float(np.prod(np.arange(1, r)))
        spec = ",".join("".join(letters[a] for a in sub_labels[B]) for B in blocks) + "->" + target
        total = total + coef * np.einsum(spec, *[moments[B] for B in blocks])
    return total
