"""The per-network objects of docs/conventions.md §2 by finite differences: a test oracle.

Given a forward pass ``net(θ) -> (M, L, 2, N)`` (neurons 0 and 1 of every layer, for M parameter
vectors θ of length P), the point θ0 and the diagonal learning rates λ (length P), the
derivatives ∂_μ z, ∂_μ∂_ν z, ∂_μ∂_ν∂_ρ z come from products of central differences with one
Richardson step (error O(h⁴)), and

    H     = Σ_μ λ_μ ∂_μz ∂_μz
    dH    = Σ_{μν} λ_μλ_ν ∂_μ∂_νz ∂_μz ∂_νz
    ddIH  = Σ_{μνρ} λ_μλ_νλ_ρ ∂_μ∂_ν∂_ρz ∂_μz ∂_νz ∂_ρz
    ddIIH = Σ_{μνρ} λ_μλ_νλ_ρ ∂_μ∂_νz ∂_ν∂_ρz ∂_μz ∂_ρz

per layer, with neuron indices first, then input indices (the storage order of §2).
"""
from __future__ import annotations

import itertools

import numpy as np


def objects_by_finite_differences(net, theta0: np.ndarray, lam: np.ndarray, L: int, N: int) -> list[dict]:
    """[{z, H, dH, ddIH, ddIIH} per layer] of the network ``net`` at ``theta0`` (module docstring)."""
    P = theta0.size
    E = np.eye(P)

    def deriv(order, h):  # product of central differences, O(h²)
        acc = 0.0
        for signs in itertools.product([1, -1], repeat=order):
            shift = 0.0
            for r, s in enumerate(signs):
                idx = [None] * order
                idx[r] = slice(None)
                shift = shift + s * E[tuple(idx) + (slice(None),)]
            pts = (theta0 + h * shift).reshape(-1, P)
            acc = acc + np.prod(signs) * net(pts).reshape((P,) * order + (L, 2, N))
        return acc / (2 * h) ** order

    def rich(order, h):  # Richardson: O(h⁴)
        return (4 * deriv(order, h) - deriv(order, 2 * h)) / 3

    T1, T2, T3 = rich(1, 1e-4), rich(2, 1e-3), rich(3, 3e-3)
    res = []
    for l in range(L):
        g = T1[:, l]
        lg = lam[:, None, None] * g
        res.append(dict(
            z=net(theta0[None])[0, l],
            H=np.einsum("mia,mjb->ijab", g, lg),
            dH=np.einsum("mnia,mjb,nkc->ijkabc", T2[:, :, l], lg, lg),
            ddIH=np.einsum("mnria,mjb,nkc,rld->ijklabcd", T3[:, :, :, l], lg, lg, lg),
            ddIIH=np.einsum("mnia,n,nrjb,mkc,rld->ijklabcd", T2[:, :, l], lam, T2[:, :, l], lg, lg)))
    return res
