"""Elementary forms (ntkdiagrams.numerics.gaussian.elementary): smooth factors without an
exponential form — GELU, erf, softplus, swish, sin and their derivatives — as data for the
compiled kernel.  The decomposition against the lambdified expressions (no numba needed), and
the compiled kernel against the numpy path (same rules: same numbers to rounding)."""
import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.numerics.activations import lambdify_z, parse_activation, z
from ntkdiagrams.numerics.gaussian import Quadrature, expectation_tensor
from ntkdiagrams.numerics.gaussian.elementary import (ATOM_ERF, ATOM_EXPO, ATOM_GAUSS, ATOM_SIN,
                                                      ATOM_SOFTPLUS, Atom, ElementaryForm, Term,
                                                      check_form, elementary_form, evaluate_form)
from ntkdiagrams.numerics.gaussian.erffamily import erf_factors
from ntkdiagrams.numerics.gaussian.tensor import prepare_factors
from ntkdiagrams.settings import Settings

ACTS = ("gelu", "erf", "swish", "softplus", "sin")


def _derivs(name, n=4):
    act = parse_activation(name)
    return [act.derivative(k) for k in range(n)]


@pytest.mark.parametrize("name", ACTS)
def test_forms_of_the_activations(name):
    """σ, σ', σ'', σ''' and the products σσ', σ'² decompose; the form equals the lambdified
    expression to rounding on [−12, 12] (relative to the value plus its size near 0)."""
    d = _derivs(name)
    x = np.linspace(-12.0, 12.0, 601)
    for e in d + [d[0] * d[1], d[1] ** 2]:
        form = elementary_form(e)
        assert form is not None, e
        with np.errstate(all="ignore"):
            ref = lambdify_z(e)(x)
        got = evaluate_form(form, x)
        ok = np.isfinite(ref)
        scale = np.max(np.abs(ref[ok & (np.abs(x) <= 1)]))
        assert np.max(np.abs(got[ok] - ref[ok]) / (np.abs(ref[ok]) + scale)) < 1e-14, e


def test_form_structure():
    """The atoms found: GELU = z/2 + z/2 · erf(z/√2); erf' a Gaussian; swish = z · sigmoid
    (an exponential form); softplus the stable log(1 + e^z); sin(2z + 1)."""
    g = elementary_form(_derivs("gelu")[0])
    assert [a.code for a in g.atoms] == [ATOM_ERF]
    assert g.atoms[0].kappa == pytest.approx(2 ** -0.5, rel=1e-15)
    assert sorted(t.poly for t in g.terms) == [(0.0, 0.5), (0.0, 0.5)]
    e1 = elementary_form(_derivs("erf")[1])
    assert [(a.code, a.kappa) for a in e1.atoms] == [(ATOM_GAUSS, -1.0)]
    assert e1.terms[0].poly == pytest.approx((2 / np.sqrt(np.pi),), rel=1e-15)
    s = elementary_form(_derivs("swish")[0])
    assert [a.code for a in s.atoms] == [ATOM_EXPO] and s.terms[0].poly == (0.0, 1.0)
    sp_ = elementary_form(_derivs("softplus")[0])
    assert [a.code for a in sp_.atoms] == [ATOM_SOFTPLUS]
    assert evaluate_form(sp_, np.array([800.0, -800.0])) == pytest.approx([800.0, 0.0])
    sn = elementary_form(sp.sin(2 * z + 1))
    assert [(a.code, a.kappa, a.shift) for a in sn.atoms] == [(ATOM_SIN, 2.0, 1.0)]


def test_no_form():
    """Functions outside the atoms, exponentials of higher powers, logs that are not a
    softplus: None (those factors keep the numpy path)."""
    for e in (sp.atan(z), sp.exp(-z ** 4), sp.log(2 + z ** 2), sp.sin(z ** 2), sp.sqrt(1 + z ** 2),
              sp.erf(z) ** 5):
        assert elementary_form(e) is None, e


def test_the_guard_refuses_a_wrong_form():
    """check_form compares a form with the lambdified expression: a coefficient off by 1e-9
    fails it."""
    good = ElementaryForm((Atom(ATOM_ERF, 1.0),), (Term((0.0, 1.0), (0,)),))
    assert check_form(good, z * sp.erf(z))
    bad = ElementaryForm((Atom(ATOM_ERF, 1.0),), (Term((0.0, 1.0 + 1e-9), (0,)),))
    assert not check_form(bad, z * sp.erf(z))


# --- the compiled kernel against the numpy path ------------------------------------------------

JIT, NUMPY = Settings(jit=True), Settings(jit=False)
G = _derivs("gelu")
E = _derivs("erf")
SW = _derivs("swish", 3)
SP = _derivs("softplus", 2)
SN = _derivs("sin", 2)
FACTORS = [[G[0]] * 4, [G[0], G[0], G[1], G[1]], [G[2], G[0], G[1], G[1]], [G[3], G[1], G[0]],
           [G[2], G[2], G[3], G[1]], [E[0]] * 4, [E[0], E[0], E[1]], [SW[0]] * 4, [SW[0], SW[1], SW[2]],
           [SP[0]] * 3 + [SP[1]], [SN[0]] * 4, [SN[0], SN[0], SN[1]],
           [G[0], sp.tanh(z), G[1], E[1]], [G[0] * G[1], G[0], G[0]], [G[0], G[1]], [SW[1], SP[0]]]


def _kernel(seed, n, var):
    """n inputs (n = 5: four distinct ones, m = 4); random correlations, one pair strongly
    correlated, one input collinear with another (merged slots with a scale α ≠ 1); every
    variance equal to ``var``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    X[1] = X[0] + 0.2 * rng.standard_normal(3)
    X[n - 1] = -0.7 * X[n - 2]
    K = X @ X.T
    d = np.sqrt(np.diag(K))
    return var * K / np.outer(d, d)


@pytest.mark.parametrize("factors", FACTORS, ids=range(len(FACTORS)))
def test_compiled_equals_numpy(factors):
    """k = 2, 3, 4 factors, m = 2, 3, 4 variables, variances 0.5, 1.5, 3: the kernel evaluates
    the elementary forms; compiled == numpy to 1e-13 relative (measured ≤ 1e-14)."""
    pytest.importorskip("numba")
    # pairs take the Hermite series and sin the exact trigonometric form under method="auto"
    trig = all(f.has(sp.sin, sp.cos) and not f.has(sp.erf, sp.exp) for f in factors)
    # and the erf family its orthant moments
    kw = {"method": "fast"} if len(factors) == 2 or trig or erf_factors(prepare_factors(factors)) else {}
    for var, seed in ((0.5, 1), (1.5, 2), (3.0, 3)):
        K = _kernel(seed, 5, var)
        with Quadrature(JIT, compiled_min_points=0) as quad:
            fast = expectation_tensor(factors, K, quadrature=quad, **kw)
        assert quad.stats["compiled_tuples"] > 0
        with Quadrature(NUMPY) as quad:
            ref = expectation_tensor(factors, K, quadrature=quad, **kw)
        assert quad.stats["compiled_tuples"] == 0
        assert np.max(np.abs(fast - ref)) < 1e-13 * np.max(np.abs(ref)), (var, factors)


def test_compiled_off_the_table():
    """At variance 200 most nodes lie beyond the piecewise polynomial (|z| > FORM_TABLE_Z):
    the kernel evaluates the terms and atoms there; compiled == numpy to 1e-12 (two factors,
    m = 2: no G table, which would be slow to build at this variance)."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3, 3))
    K = 200.0 * (X @ X.T) / np.max(np.diag(X @ X.T))
    for factors in ([G[1], SW[1]], [E[0], SN[0]], [G[2], SP[0]]):
        with Quadrature(JIT, compiled_min_points=0) as quad:
            fast = expectation_tensor(factors, K, quadrature=quad, method="fast")
        assert quad.stats["compiled_tuples"] > 0
        ref = expectation_tensor(factors, K, settings=NUMPY, method="fast")
        assert np.all(np.isfinite(fast))
        assert np.max(np.abs(fast - ref)) < 1e-12 * np.max(np.abs(ref)), factors


def test_table_of_a_form():
    """form_table: the piecewise polynomial of GELU' within FORM_TABLE_TOL of the form on
    |z| < FORM_TABLE_Z (measured ~3e-15 relative to |g| + max_{|z|≤1}|g|)."""
    from ntkdiagrams.numerics.gaussian.elementary import (FORM_TABLE_TOL, FORM_TABLE_Z,
                                                          evaluate_table, form_table)
    form = elementary_form(G[1])
    tab, q = form_table(form)
    assert tab is not None and form.table is not None and q == 0
    x = np.random.default_rng(0).uniform(-FORM_TABLE_Z, FORM_TABLE_Z, 5000)
    ref = evaluate_form(form, x)
    assert np.max(np.abs(evaluate_table(tab, x) - ref) / (np.abs(ref) + 1.0)) < FORM_TABLE_TOL


def test_table_near_zero():
    """g = z^q h: the table keeps z·tanh z (q = 2) and GELU (q = 1) accurate relative to g at
    tiny z, where a table of g itself would be off by its absolute error."""
    from ntkdiagrams.numerics.gaussian.elementary import evaluate_table
    for e, q in ((z * sp.tanh(z), 2), (G[0], 1), (SN[0], 1)):
        form = elementary_form(e)
        assert form.table is not None and form.power == q, e
        x = np.array([1e-30, -1e-12, 3e-6, -0.01])
        ref = lambdify_z(e)(x)
        assert np.all(np.abs(evaluate_table(form.table, x, q) - ref) <= 1e-13 * np.abs(ref)), e


def test_tiny_variances_through_the_kernel():
    """z·tanh z and its derivative over a kernel of variance 1e-20 (deep networks whose
    kernel shrinks), two factors (m = 2: no G table, whose absolute error would dominate at
    this scale on either path): compiled == numpy to 1e-13 relative, and both equal the exact
    method (a table of g itself, without z^q factored out, gave garbage here)."""
    pytest.importorskip("numba")
    K = 1e-20 * _kernel(7, 4, 1.0)
    e = z * sp.tanh(z)
    for factors in ([e, e], [sp.diff(e, z)] * 2):  # even products (odd ones vanish)
        with Quadrature(JIT, compiled_min_points=0) as quad:
            fast = expectation_tensor(factors, K, quadrature=quad, method="fast")
        assert quad.stats["compiled_tuples"] > 0
        ref = expectation_tensor(factors, K, settings=NUMPY, method="fast")
        assert np.max(np.abs(fast - ref)) < 1e-13 * np.max(np.abs(ref)), factors
        exact = expectation_tensor(factors, K, settings=NUMPY, method="exact", degree=30)
        assert np.max(np.abs(fast - exact)) < 1e-9 * np.max(np.abs(exact)), factors
