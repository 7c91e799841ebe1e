"""Validation of a data set of N inputs x_α ∈ R^{n0}, shared by the evaluators and the sampler."""
from __future__ import annotations

import numpy as np

from ..errors import InputError


def check_inputs(x) -> np.ndarray:
    """Validate a data set: a finite 2-D float array of shape (N, n0) with N, n0 ≥ 1."""
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"inputs must be a numeric (N, n0) array: {exc}") from None
    if arr.ndim != 2:
        raise InputError(f"inputs must be a 2-D array of shape (N, n0); got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"inputs must have N >= 1 rows and n0 >= 1 columns; got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        raise InputError(f"inputs contain NaN or inf ({int(bad.sum())} entries; first at row {r}, column {c})")
    return arr
