"""Batched Cholesky factors of the slot covariances (one small matrix per index tuple).

C = L Lᵀ with L lower triangular, so that z = L u, u ~ N(0, I_m): the coordinates in which the
cone method (:mod:`.cone`) and the fast path (:mod:`.fast`) integrate.
"""
from __future__ import annotations

import numpy as np

__all__ = ["batched_cholesky", "cholesky_jittered"]


def cholesky_jittered(C: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Batched Cholesky factors; a covariance that is singular to rounding gets a 1e-12 relative
    jitter (1e-12 · max_j C_jj) on its diagonal first.  Returns the (possibly jittered)
    covariances and the factors."""
    L, ok = batched_cholesky(C)
    if not np.all(ok):
        bad = ~ok
        jit = 1e-12 * np.max(np.einsum("nii->ni", C[bad]), axis=1)
        C = C.copy()
        C[bad] += jit[:, None, None] * np.eye(m)
        L[bad] = batched_cholesky(C[bad])[0]
    return C, L


def batched_cholesky(C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factors of PSD matrices (n, m, m), clamping tiny pivots
    (≤ 1e-13 C_jj) to 0.

    Returns (L, ok) with ok False where a pivot was (numerically) zero."""
    n, m, _ = C.shape
    L = np.zeros_like(C)
    ok = np.ones(n, bool)
    for j in range(m):
        d = C[:, j, j] - np.sum(L[:, j, :j] ** 2, axis=1)
        tiny = d <= 1e-13 * np.maximum(C[:, j, j], 1e-300)
        ok &= ~tiny
        sd = np.sqrt(np.where(tiny, 1.0, d))
        L[:, j, j] = np.where(tiny, 0.0, sd)
        for i in range(j + 1, m):
            v = (C[:, i, j] - np.sum(L[:, i, :j] * L[:, j, :j], axis=1)) / sd
            L[:, i, j] = np.where(tiny, 0.0, v)
    return L, ok
