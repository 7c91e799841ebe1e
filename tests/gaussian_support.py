"""Shared by the Gaussian-expectation tests: the scale that their errors are measured against."""
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
