"""The erf family's closed form against quadrature, and what the fast path left (prints a table; not a test).

For networks of issue 15's grid (N = 16 inputs in n0 = 3, C_b = 0; erf and GELU), the kernels
K^(ℓ) of chosen layers, 40 random tuples (a, b, c, d) of distinct inputs and 40 tuples (a, b, b, c)
(merged slots): E[σ^(d1) σ^(d2) σ^(d3) σ^(d4)] for the derivative orders of :data:`ORDERS`, by

* ``closed``: ``method="auto"``, since 2026-12-02 the orthant moments of
  :mod:`ntkdiagrams.numerics.gaussian.erffamily`;
* ``ladders``: ``method="fast"``, the fast path with its ladders (what ``auto`` did before);

against the fast path's nested rule at a uniform 128 nodes per side (column "ref": its change
from 96 nodes, an upper bound on its own error where it converges).  Errors relative to the scale
Π_k ⟨f_k(z_k)²⟩^{1/2} (:func:`validate_twofactor.scale`), the largest over the tuples.

    python3 scripts/validate_erffamily.py      # the table of docs/gaussian.md (~10 min)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ntkdiagrams.numerics.gaussian import Quadrature  # noqa: E402
from ntkdiagrams.numerics.gaussian.tensor import tensor_values  # noqa: E402
from ntkdiagrams.settings import Settings  # noqa: E402

from validate_merged import sampled_table  # noqa: E402  (the table's rows, shared)

#: (activation, |x|²/n0, C_W, layers)
CASES = (("erf", 3.0, 2.0, (1, 2, 10)), ("erf", 0.3, 1.0, (1, 10)), ("gelu", 3.0, 2.0, (1, 2, 10)),
         ("gelu", 1.0, 2.0, (1, 10)))
ORDERS = ((0, 0, 0, 0), (1, 1, 2, 0))


def columns(facs, K, tup) -> list[np.ndarray]:
    """``closed`` (``method="auto"``) and ``ladders`` (``method="fast"``)."""
    with Quadrature(Settings(threads=2)) as quad:
        return [tensor_values(facs, K, tup, None, method, quad) for method in ("auto", "fast")]


def main() -> None:
    sampled_table(CASES, ORDERS, columns, ("closed", "ladders"))


if __name__ == "__main__":
    main()
