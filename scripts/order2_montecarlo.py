"""Monte Carlo estimates of the statistics whose 1/n² parts scripts/validate_order2.py checks.

For networks of hidden width n (every layer, the output layer too, has n neurons, so that every
layer ℓ ≥ 2 is a layer of fan-in n with n ≥ 3 neurons), per layer ℓ and per batch of networks:

* the two-point function  G_{α1α2} = E[z_{i;α1} z_{i;α2}]                 (= K + G1/n + G2/n² + …)
* the connected four-point function at neurons (0, 0, 1, 1)
      κ4_{(α1α2)(α3α4)} = κ(z_{0;α1} z_{0;α2}, z_{1;α3} z_{1;α4})           (= V/n + V1/n² + …)
* the connected six-point function at neurons (0, 0, 1, 1, 2, 2)
      κ6_{(α1α2)(α3α4)(α5α6)} = κ(z_0 z_0, z_1 z_1, z_2 z_2)                 (= V6/n² + …)
* optionally the NTK mean  Θ_{α1α2} = E[H_{ii;α1α2}] over neurons 0 and 1  (= Θ + Θ1/n + Θ2/n² + …)

With P_i = z_{i;·} z_{i;·}ᵀ each neuron of a pair carries its two legs, and since a joint cumulant
of layer-ℓ fields vanishes unless its neuron indices pair up, the cumulant of the six legs at
(0, 0, 1, 1, 2, 2) is exactly the third joint cumulant of P_0, P_1, P_2 (Leonov–Shiryaev: every
other partition of the six legs has a block with an unpaired neuron).  Neurons are exchangeable,
so the moments E[P_i], E[P_i ⊗ P_j] and E[P_i ⊗ P_j ⊗ P_k] at distinct neurons are averaged over
all distinct neurons of each network, through power sums (S_1 = Σ_i P_i, S_2 = Σ_i P_i ⊗ P_i, …):

    Σ_{i≠j} P_i ⊗ P_j = S_1 ⊗ S_1 − S_2,
    Σ_{i,j,k distinct} P_i ⊗ P_j ⊗ P_k = S_1⊗S_1⊗S_1 − (S_2⊗S_1 in its three slot placements) + 2 S_3.

Cumulants are formed from the moments of each batch (an O(1/batch size) bias, far below the
errors); the standard errors are batch means.  Networks come from
:mod:`ntkdiagrams.sampling.networks`, which shares no code with the engine.
"""
from __future__ import annotations

import time

import numpy as np

from ntkdiagrams.numerics.activations import parse_activation
from ntkdiagrams.sampling.networks import activation_derivatives, draw_ensemble, forward, layer_objects


def _power_sums(P: np.ndarray) -> tuple:
    """P: (C, n, M) per-network, per-neuron vectors.  Sums over networks of the distinct-neuron
    products of one, two and three neurons, each divided by its number of neuron tuples."""
    C, n, M = P.shape
    S1 = P.sum(1)                                                   # (C, M)
    S2 = np.einsum("cia,cib->cab", P, P)                             # (C, M, M)
    S3 = np.einsum("cia,cib,cid->abd", P, P, P)                      # (M, M, M), summed over c
    m1 = S1.sum(0) / n
    m2 = (np.einsum("ca,cb->ab", S1, S1) - S2.sum(0)) / (n * (n - 1))
    t = np.einsum("ca,cb,cd->abd", S1, S1, S1)
    t -= np.einsum("cab,cd->abd", S2, S1)
    t -= np.einsum("cad,cb->abd", S2, S1)
    t -= np.einsum("cbd,ca->abd", S2, S1)
    t += 2 * S3
    m3 = t / (n * (n - 1) * (n - 2))
    return m1, m2, m3


def _cumulants(m1, m2, m3) -> tuple:
    """(G, κ4, κ6) from the distinct-neuron moments of one batch."""
    k4 = m2 - np.einsum("a,b->ab", m1, m1)
    k6 = (m3 - np.einsum("a,bd->abd", m1, m2) - np.einsum("b,ad->abd", m1, m2)
          - np.einsum("d,ab->abd", m1, m2) + 2 * np.einsum("a,b,d->abd", m1, m1, m1))
    return m1, k4, k6


def sample_order2(activation: str, x: np.ndarray, width: int, depth: int, samples: int, *, cb: float, cw: float,
                  lb: float = 1.0, lw: float = 1.0, seed: int = 0, batches: int = 20, chunk: int | None = None,
                  ntk: bool = False, progress=None) -> dict:
    """Estimates of G, κ4, κ6 (and Θ with ``ntk``) per layer 1..depth for ``samples`` networks of width n.

    Returns {"width", "samples", "seconds", "layers": [{"layer", "G": (mean, stderr), "k4": …, "k6": …,
    "Theta": …}]} with arrays of shape (N, N), (N,)*4, (N,)*6 (input slots in the order of the module doc)."""
    if width < 3:
        raise ValueError("the six-point function needs at least 3 neurons per layer")
    act = parse_activation(activation)
    derivs = activation_derivatives(act, 1 if ntk else 0)
    x = np.asarray(x, dtype=float)
    N, n0 = x.shape
    widths = [n0] + [width] * depth
    if chunk is None:
        chunk = max(100, min(20000, int(4e6 // (width * width * depth + 1))))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 20261130, width]))
    sizes = [samples // batches + (1 if b < samples % batches else 0) for b in range(batches)]
    per_batch = []
    t0 = time.perf_counter()
    done = 0
    for bsize in sizes:
        acc = [[0.0, 0.0, 0.0, 0.0] for _ in range(depth)]
        left = bsize
        while left > 0:
            c = min(chunk, left)
            left -= c
            ens = draw_ensemble(rng, c, widths, x, cb, cw, lb, lw)
            fw = forward(ens, derivs)
            for ell in range(1, depth + 1):
                z = fw.z[ell]                                         # (C, n, N)
                P = np.einsum("cia,cib->ciab", z, z).reshape(c, width, N * N)
                m1, m2, m3 = _power_sums(P)
                a = acc[ell - 1]
                a[0] = a[0] + m1
                a[1] = a[1] + m2
                a[2] = a[2] + m3
                if ntk:
                    H = layer_objects(ens, fw, ell, H=True)["H"]      # (C, 2, 2, N, N)
                    a[3] = a[3] + 0.5 * (H[:, 0, 0] + H[:, 1, 1]).sum(0)
            done += c
            if progress:
                progress(done, samples, time.perf_counter() - t0)
        per_batch.append([_cumulants(a[0] / bsize, a[1] / bsize, a[2] / bsize) + ((a[3] / bsize) if ntk else None,)
                          for a in acc])
    layers = []
    for ell in range(depth):
        out = {"layer": ell + 1}
        for q, (key, shape) in enumerate([("G", (N, N)), ("k4", (N,) * 4), ("k6", (N,) * 6), ("Theta", (N, N))]):
            if key == "Theta" and not ntk:
                continue
            v = np.stack([np.asarray(b[ell][q]).reshape(shape) for b in per_batch])
            out[key] = (v.mean(0), v.std(0, ddof=1) / np.sqrt(len(per_batch)))
        layers.append(out)
    return {"width": width, "samples": samples, "seconds": time.perf_counter() - t0, "layers": layers}
