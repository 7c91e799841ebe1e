"""The compiled kernel of the fast path (ntkdiagrams.numerics.gaussian.compiled, needs numba) against the
numpy path (ntkdiagrams.numerics.gaussian.nested): the same rules, so the same numbers up to rounding.
Settings(jit=...) chooses the path; the counters of a Quadrature tell which one ran.  The tests run the
kernel on small tensors with Quadrature(compiled_min_points=0): by default a call of fewer than
COMPILED_MIN_POINTS quadrature points takes the numpy path."""
import numpy as np
import pytest
import sympy as sp

pytest.importorskip("numba")

from ntkdiagrams.numerics.activations import z  # noqa: E402
from ntkdiagrams.numerics.gaussian import Quadrature, expectation_tensor  # noqa: E402
from ntkdiagrams.settings import Settings  # noqa: E402

TH = sp.tanh(z)
D1, D2 = sp.diff(TH, z), sp.diff(TH, z, 2)
SIGMOID = 1 / (1 + sp.exp(-z))
JIT, NUMPY = Settings(jit=True), Settings(jit=False)


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


def _run(factors, K, settings, **kw):
    """(tensor, tuples summed by the compiled kernel)."""
    with Quadrature(settings, compiled_min_points=0) as quad:
        T = expectation_tensor(factors, K, quadrature=quad, **kw)
    return T, quad.stats["compiled_tuples"]


@pytest.mark.parametrize("factors", [[TH] * 4, [TH, TH, D1, D1], [D2, TH, D1, D1], [TH, TH, D1],
                                     [D1, D1, D1], [TH, TH], [D2, D2], [SIGMOID] * 4,
                                     [TH * TH, D1]])
@pytest.mark.parametrize("var", [0.3, 0.8, 1.6])
def test_compiled_equals_numpy(factors, var):
    """k = 2, 3, 4 factors (m = 2 without a table, m = 3, 4 with one; merged slots; split and
    Gauss–Hermite levels at small and large variance): compiled == numpy to 1e-13."""
    K = _kernel(11, n=5, var=var)
    # two factors: method="auto" takes the Hermite series (series.py); the fast path is forced
    kw = {"method": "fast"} if len(factors) == 2 else {}
    fast, compiled = _run(factors, K, JIT, **kw)
    assert compiled > 0
    ref, compiled = _run(factors, K, NUMPY, **kw)
    assert compiled == 0  # the numpy path did not call the kernel
    assert np.max(np.abs(fast - ref)) < 1e-13 * np.max(np.abs(ref)), factors


def test_compiled_explicit_degree_and_forced_method():
    """degree=n (n nodes per side everywhere) and method="fast" at a large variance, where the
    addition theorem's guard |κα z|·d ≤ 600 sends points to the direct evaluation."""
    K = _kernel(4, n=5, var=0.8)
    big = _kernel(5, n=4, var=200.0, close=False)
    sech2 = 1 - TH ** 2
    for factors, KK, kw in (([TH] * 4, K, {"degree": 9}), ([TH, TH, D1], K, {"degree": 12}),
                            ([sech2, sech2], big, {"method": "fast"}),
                            ([sech2] * 3, big, {"method": "fast"})):
        fast, compiled = _run(factors, KK, JIT, **kw)
        assert compiled > 0
        ref = expectation_tensor(factors, KK, settings=NUMPY, **kw)
        assert np.all(np.isfinite(fast))
        assert np.max(np.abs(fast - ref)) < 1e-12 * np.max(np.abs(ref)), (factors, kw)


def test_addition_theorem_off_in_the_kernel():
    """Quadrature(addition_theorem=False) reaches the kernel too: every point is evaluated by
    P(E)/Q(E) directly; the numbers agree to rounding."""
    K = _kernel(6, n=5, var=0.8)
    for factors in ([TH] * 4, [TH, TH, D1]):
        with Quadrature(JIT, addition_theorem=False, compiled_min_points=0) as quad:
            direct = expectation_tensor(factors, K, quadrature=quad)
        assert quad.stats["compiled_tuples"] > 0
        ref = expectation_tensor(factors, K, settings=JIT)
        assert np.max(np.abs(direct - ref)) < 1e-13 * np.max(np.abs(ref)), factors


def test_factor_without_a_form_uses_numpy():
    """atan has neither an exponential form R(e^{κz}) nor an elementary form (erf, GELU, … have
    one: tests/test_gaussian_elementary.py): the kernel is not called and the numbers are the
    numpy path's."""
    K = _kernel(2, n=5)
    a, compiled = _run([sp.atan(z)] * 4, K, JIT)
    assert compiled == 0
    assert np.array_equal(a, expectation_tensor([sp.atan(z)] * 4, K, settings=NUMPY))


def test_jit_off_from_the_environment(monkeypatch):
    """NTKDIAGRAMS_JIT=0 (read by Settings.from_environment at the entry point) keeps the
    numpy path."""
    K = _kernel(3, n=5)
    monkeypatch.setenv("NTKDIAGRAMS_JIT", "0")
    with Quadrature() as quad:
        a = expectation_tensor([TH] * 4, K, quadrature=quad)
    assert quad.stats["compiled_tuples"] == 0
    assert np.array_equal(a, expectation_tensor([TH] * 4, K))
    assert np.array_equal(a, expectation_tensor([TH] * 4, K, settings=NUMPY))
    monkeypatch.setenv("NTKDIAGRAMS_JIT", "1")
    assert _run([TH] * 4, K, None)[1] > 0


def test_small_calls_take_the_numpy_path():
    """Below COMPILED_MIN_POINTS quadrature points (all tuples of a call together) the default
    Quadrature keeps the numpy path (no numba to load for a few tuples), with the numpy path's
    numbers; the kernel on the same call agrees to rounding."""
    from ntkdiagrams.numerics.gaussian.context import COMPILED_MIN_POINTS

    K = _kernel(3, n=4)
    with Quadrature(JIT) as quad:
        a = expectation_tensor([TH, TH], K, quadrature=quad, method="fast")
    assert quad.stats["compiled_tuples"] == 0 and quad.stats["fast_tuples"] > 0
    assert np.array_equal(a, expectation_tensor([TH, TH], K, method="fast", settings=NUMPY))
    b, compiled = _run([TH, TH], K, JIT, method="fast")
    assert compiled > 0
    assert np.max(np.abs(a - b)) < 1e-13 * np.max(np.abs(a))
    # a call above the bound takes the kernel by default
    with Quadrature(JIT, compiled_min_points=COMPILED_MIN_POINTS) as quad:
        expectation_tensor([TH] * 4, _kernel(7, n=7), quadrature=quad)
    assert quad.stats["compiled_tuples"] > 0


def test_threads_do_not_change_the_numbers():
    """Tuples are summed independently: one thread and a pool of three threads (8 interleaved
    groups per thread) give identical bits."""
    K = _kernel(7, n=7)
    one, c1 = _run([TH] * 4, K, Settings(jit=True, threads=1))
    many, c3 = _run([TH] * 4, K, Settings(jit=True, threads=3))
    assert c1 == c3 > 0
    assert np.array_equal(one, many)


def test_accuracy_through_the_kernel():
    """The kernel keeps the fast path's accuracy: ⟨f g⟩ for tanh and its derivatives at
    variance 1.5 (slopes beyond FAST_LADDER: the m = 2 rungs; method="fast", since "auto" sums
    two smooth factors by the Hermite series) against the exact cone method at degree 60
    (≤ 1e-9)."""
    K = _kernel(9, n=5, var=1.5)
    with Quadrature(JIT, compiled_min_points=0) as quad:
        for facs in ([TH, TH], [D1, D1], [D2, TH], [D2, D2]):
            fast = expectation_tensor(facs, K, quadrature=quad, method="fast")
            exact = expectation_tensor(facs, K, method="exact", degree=60, settings=NUMPY)
            assert np.max(np.abs(fast - exact)) < 1e-9 * np.max(np.abs(exact)), facs
    assert quad.stats["compiled_tuples"] >= 4


SOFTPLUS = sp.log(1 + sp.exp(z))
SWISH = z / (1 + sp.exp(-z))


@pytest.mark.parametrize("factors", [[SOFTPLUS] * 4, [SWISH] * 4])
def test_three_level_loops_equal_the_walk(factors, monkeypatch):
    """Four elementary forms at variance 6 (|x|²/n0 = 3, C_W = 2) on a rank-3 kernel (four-point
    tuples stay in the Cholesky form): the kernel's calls qualify for its three plain loops
    (compiled.three_levels), tuples there read the table's cells, and the loops' sums are the
    walk's, bit for bit."""
    from ntkdiagrams.numerics.gaussian import compiled as gj
    from ntkdiagrams.numerics.gaussian.table import TABLE_H_MU, TABLE_REACH
    calls, real = [], gj.nested

    def spy(*args, **kw):
        calls.append((args, kw))
        return real(*args, **kw)
    monkeypatch.setattr(gj, "nested", spy)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((6, 3))
    K = 6.0 * X @ X.T / np.max(np.sum(X * X, axis=1))
    with Quadrature(JIT, compiled_min_points=0) as quad:
        expectation_tensor(factors, K, quadrature=quad)
    four = [(a, kw) for a, kw in calls
            if gj.three_levels(a[3], a[4], gj.pack_factors(a[6])[1], a[7], a[9])]
    assert four
    cells = 0
    for a, kw in four:
        L, codes, width = a[0], a[1], a[2][4]
        points = np.prod(width[codes[:, :3]], axis=1)
        window = 2 * TABLE_REACH * np.sqrt(np.sum(L[:, 3, :3] ** 2, axis=1)) / TABLE_H_MU
        cells += int(np.sum(points >= window))  # tuples that take the loops (not "direct")
        kw = {k: v for k, v in kw.items() if k not in ("pool", "groups")}
        assert np.array_equal(real(*a, **kw, three=True), real(*a, **kw, three=False))
    assert cells > 0
