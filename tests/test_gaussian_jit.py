"""The compiled kernel of the fast path (ntkdiagrams.numerics.gaussian.compiled, needs numba) against the
numpy path of ntkdiagrams.numerics.gaussian.core: the same rules, so the same numbers up to rounding."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import sympy as sp

pytest.importorskip("numba")

import ntkdiagrams.numerics.gaussian.core as g  # noqa: E402
import ntkdiagrams.numerics.gaussian.compiled as gj  # noqa: E402
from ntkdiagrams.numerics.activations import z  # noqa: E402
from ntkdiagrams.numerics.gaussian.core import expectation_tensor  # noqa: E402

TH = sp.tanh(z)
D1, D2 = sp.diff(TH, z), sp.diff(TH, z, 2)
SIGMOID = 1 / (1 + sp.exp(-z))


def _kernel(seed, n=6, var=0.8, close=True):
    """A kernel with moderate correlations, three strongly correlated inputs and one input
    collinear with another (merged slots with a scale α ≠ 1)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    if close:
        X[1:3] = X[0] + 0.15 * rng.standard_normal((2, 3))
    X[n - 1] = -0.7 * X[n - 2]
    K = 0.9 * X @ X.T / 3
    return K * var / np.max(np.diag(K))


def _counting(monkeypatch):
    calls = {"n": 0}
    nested = gj.nested

    def counted(*args, **kwargs):
        calls["n"] += 1
        return nested(*args, **kwargs)
    monkeypatch.setattr(gj, "nested", counted)
    return calls


@pytest.mark.parametrize("factors", [[TH] * 4, [TH, TH, D1, D1], [D2, TH, D1, D1], [TH, TH, D1],
                                     [D1, D1, D1], [TH, TH], [D2, D2], [SIGMOID] * 4,
                                     [TH * TH, D1]])
@pytest.mark.parametrize("var", [0.3, 0.8, 1.6])
def test_compiled_equals_numpy(monkeypatch, factors, var):
    """k = 2, 3, 4 factors (m = 2 without a table, m = 3, 4 with one; merged slots; split and
    Gauss–Hermite levels at small and large variance): compiled == numpy to 1e-13."""
    K = _kernel(11, n=5, var=var)
    calls = _counting(monkeypatch)
    monkeypatch.setenv("NTKDIAGRAMS_JIT", "1")
    fast = expectation_tensor(factors, K)
    assert calls["n"] > 0
    monkeypatch.setenv("NTKDIAGRAMS_JIT", "0")
    n = calls["n"]
    ref = expectation_tensor(factors, K)
    assert calls["n"] == n  # the numpy path did not call the kernel
    assert np.max(np.abs(fast - ref)) < 1e-13 * np.max(np.abs(ref)), factors


def test_compiled_explicit_degree_and_forced_method(monkeypatch):
    """degree=n (n nodes per side everywhere) and method="fast" at a large variance, where the
    addition theorem's guard |κα z|·d ≤ 600 sends points to the direct evaluation."""
    K = _kernel(4, n=5, var=0.8)
    big = _kernel(5, n=4, var=200.0, close=False)
    sech2 = 1 - TH ** 2
    for factors, KK, kw in (([TH] * 4, K, {"degree": 9}), ([TH, TH, D1], K, {"degree": 12}),
                            ([sech2, sech2], big, {"method": "fast"}),
                            ([sech2] * 3, big, {"method": "fast"})):
        monkeypatch.setenv("NTKDIAGRAMS_JIT", "1")
        fast = expectation_tensor(factors, KK, **kw)
        monkeypatch.setenv("NTKDIAGRAMS_JIT", "0")
        ref = expectation_tensor(factors, KK, **kw)
        assert np.all(np.isfinite(fast))
        assert np.max(np.abs(fast - ref)) < 1e-12 * np.max(np.abs(ref)), (factors, kw)


def test_factor_without_exponential_form_uses_numpy(monkeypatch):
    """erf has no form R(e^{κz}): the kernel is not called and the numbers are the numpy
    path's."""
    K = _kernel(2, n=5)
    calls = _counting(monkeypatch)
    monkeypatch.setenv("NTKDIAGRAMS_JIT", "1")
    a = expectation_tensor([sp.erf(z)] * 4, K)
    assert calls["n"] == 0
    monkeypatch.setenv("NTKDIAGRAMS_JIT", "0")
    assert np.array_equal(a, expectation_tensor([sp.erf(z)] * 4, K))


def test_threads_do_not_change_the_numbers(monkeypatch):
    """Tuples are summed independently: one thread and an executor with interleaved groups
    give identical bits."""
    captured = []
    nested = gj.nested

    def capture(*args, **kwargs):
        captured.append(args)
        return nested(*args, **kwargs)
    monkeypatch.setattr(gj, "nested", capture)
    monkeypatch.setenv("NTKDIAGRAMS_JIT", "1")
    expectation_tensor([TH] * 4, _kernel(7, n=7))
    args = max(captured, key=lambda a: a[0].shape[0])
    one = nested(*args)
    with ThreadPoolExecutor(max_workers=3) as pool:
        many = nested(*args, pool=pool, groups=7)
    assert np.array_equal(one, many)


def test_accuracy_through_the_kernel(monkeypatch):
    """The kernel keeps the fast path's accuracy: ⟨f g⟩ for tanh and its derivatives at
    variance 1.5 (slopes beyond FAST_LADDER: the m = 2 rungs) against the exact cone method
    at degree 60 (≤ 1e-9)."""
    monkeypatch.setenv("NTKDIAGRAMS_JIT", "1")
    K = _kernel(9, n=5, var=1.5)
    calls = _counting(monkeypatch)
    for facs in ([TH, TH], [D1, D1], [D2, TH], [D2, D2]):
        fast = expectation_tensor(facs, K)
        exact = expectation_tensor(facs, K, method="exact", degree=60)
        assert np.max(np.abs(fast - exact)) < 1e-9 * np.max(np.abs(exact)), facs
    assert calls["n"] >= 4
