"""Shared by the Gaussian-expectation tests: the scale that their errors are measured against, and the
rank-3 first-layer kernel of issue 15's benchmark grid."""
from __future__ import annotations

import numpy as np


def scale(facs, C) -> np.ndarray:
    """Π_k ⟨f_k(z_k)²⟩^{1/2} by 300-point Gauss–Hermite, per kernel C (T, m, m)."""
    x, w = np.polynomial.hermite_e.hermegauss(300)
    w = w / w.sum()
    s = np.ones(C.shape[0])
    for k, f in enumerate(facs):
        s *= np.sqrt(np.sum(w * f.plus(np.sqrt(C[:, k, k])[:, None] * x) ** 2, axis=1))
    return s


def first_layer_kernel(norm: float, cw: float = 2.0) -> np.ndarray:
    """K^(1) = C_W x xᵀ/n0 for 16 standard-normal inputs in n0 = 3 (seed 0), scaled to mean
    |x|²/n0 = ``norm`` (the inputs of scripts/bench_grid.py): rank 3, so every four-input tuple
    is degenerate."""
    x = np.random.default_rng(0).standard_normal((16, 3))
    x *= np.sqrt(norm / np.mean(np.sum(x * x, axis=1) / 3))
    return cw * x @ x.T / 3
