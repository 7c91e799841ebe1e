"""The radial rule of the cone method (ntkdiagrams.numerics.gaussian.rules.radial_rule).

The Chebyshev algorithm in decimal arithmetic replaced the Cholesky factor of the Hankel matrix
of moments in mpmath (issue 15: the rule of n = 64 cost 0.25 s of every CLI run).  Both are exact
to far more than 16 digits, so they must give the same doubles; the reference below is the old
implementation."""
from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

from ntkdiagrams.numerics.gaussian.rules import radial_rule


def cholesky_rule(n: int, p: int):
    """The rule as computed before: Golub–Welsch from the Cholesky factor of the Hankel matrix."""
    with mp.workdps(40 + 3 * n):
        mom = [mp.mpf(2) ** (mp.mpf(j + p + 1) / 2 - 1) * mp.gamma(mp.mpf(j + p + 1) / 2)
               for j in range(2 * n + 1)]
        H = mp.matrix(n + 1, n + 1)
        for i in range(n + 1):
            for j in range(n + 1):
                H[i, j] = mom[i + j]
        R = mp.cholesky(H).T
        a = np.empty(n)
        b = np.empty(max(n - 1, 0))
        for k in range(n):
            a[k] = float(R[k, k + 1] / R[k, k] - (R[k - 1, k] / R[k - 1, k - 1] if k else 0))
            if k < n - 1:
                b[k] = float(R[k + 1, k + 1] / R[k, k])
        m0 = float(mom[0])
    J = np.diag(a) + np.diag(b, 1) + np.diag(b, -1)
    x, vec = np.linalg.eigh(J)
    return x, m0 * vec[0] ** 2


@pytest.mark.parametrize("n,p", [(1, 0), (2, 1), (5, 0), (12, 0), (12, 1), (12, 2), (12, 3), (20, 2), (33, 1),
                                 (64, 0)])
def test_radial_rule_same_doubles_as_cholesky(n, p):
    x, w = radial_rule(n, p)
    xr, wr = cholesky_rule(n, p)
    assert np.array_equal(x, xr) and np.array_equal(w, wr)


@pytest.mark.parametrize("p", [0, 1, 3])
def test_radial_rule_integrates_moments(p):
    # ∫_0^∞ r^{q+p} e^{-r²/2} dr = 2^{(q+p+1)/2-1} Γ((q+p+1)/2), exact for q ≤ 2n − 1
    n = 10
    x, w = radial_rule(n, p)
    assert np.all(x > 0) and np.all(w > 0)
    for q in (0, 1, 7, 2 * n - 1):
        exact = 2 ** ((q + p + 1) / 2 - 1) * math.gamma((q + p + 1) / 2)
        assert abs(np.sum(w * x ** q) - exact) <= 1e-12 * exact
    # and not beyond: a factor-of-two error would show at once
    q = 2 * n
    exact = 2 ** ((q + p + 1) / 2 - 1) * math.gamma((q + p + 1) / 2)
    assert abs(np.sum(w * x ** q) - exact) > 1e-12 * exact
