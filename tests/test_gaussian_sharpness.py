"""The sharpness κ of a factor (ntkdiagrams.numerics.gaussian.sharpness): the fast path's ladders see
a factor smoother than tanh with κ ≤ 1 times its slope.  κ is a 1-D calibration against the tanh
family; these tests check its values, its storage, the rule choice it makes, and that the fewer
nodes it gives keep the accuracy at the benchmark grid's large variances."""
import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.numerics.activations import parse_activation, z
from ntkdiagrams.numerics.gaussian import Quadrature, expectation_tensor
from ntkdiagrams.numerics.gaussian.factors import prepare_factor
from ntkdiagrams.numerics.gaussian.ladder import (FAST_LADDER_M34, SHARPNESS_RUNGS, rule_codes,
                                                  points_per_tuple)
from ntkdiagrams.numerics.gaussian.sharpness import (SHARPNESS_FROM, SHARPNESS_LOGISTIC_BELOW, SHARPNESS_MIN,
                                                     SHARPNESS_SAFETY, SHARPNESS_SAFETY_LOGISTIC, logistic,
                                                     rung_ratios, sharpness)
from ntkdiagrams.settings import Settings


def kappa(expr, folder=None):
    return sharpness(prepare_factor(expr), SHARPNESS_RUNGS, folder)


def test_the_tanh_family_is_not_sharpened():
    """tanh, sech², tanh·sech² are the ladders' own calibration: κ = 1."""
    for e in (sp.tanh(z), 1 / sp.cosh(z) ** 2, sp.diff(sp.tanh(z), z, 2)):
        assert kappa(e) == 1.0, e


@pytest.mark.parametrize("name,upper", [("softplus", 0.45), ("swish", 0.5), ("gelu", 0.75), ("erf", 0.95)])
def test_smoother_factors(name, upper):
    """Singularities at ±iπ (softplus, the sigmoid) or none (GELU, erf): κ < 1, within
    [SHARPNESS_MIN, 1] (measured 2026-12-02: softplus 0.39, swish 0.48, GELU 0.66, erf 0.88)."""
    k = kappa(parse_activation(name).expr)
    assert SHARPNESS_MIN <= k < upper


@pytest.mark.parametrize("name,expected", [("softplus", True), ("swish", True), ("tanh", True),
                                           ("gelu", False), ("erf", False), ("sin", False)])
def test_logistic_family(name, expected):
    """The logistic family (exponential forms, softplus and swish with their derivatives) takes the
    safety SHARPNESS_SAFETY_LOGISTIC where its ratio is ≤ SHARPNESS_LOGISTIC_BELOW; entire factors
    and the tanh family take SHARPNESS_SAFETY."""
    act = parse_activation(name)
    for d in range(3):
        f = prepare_factor(act.derivative(d))
        assert logistic(f) is expected, (name, d)
        ratio = float(np.max(rung_ratios(f, SHARPNESS_RUNGS)))
        safety = SHARPNESS_SAFETY_LOGISTIC if expected and ratio <= SHARPNESS_LOGISTIC_BELOW else SHARPNESS_SAFETY
        assert sharpness(f, SHARPNESS_RUNGS) == pytest.approx(min(1.0, max(SHARPNESS_MIN, safety * ratio)))


def test_stored_and_read_back(tmp_path):
    """The calibration is kept with the quadrature tables: a second read gives the same ratios."""
    f = prepare_factor(sp.exp(-z * z / 3) * sp.tanh(z / 2))
    a = rung_ratios(f, SHARPNESS_RUNGS, tmp_path)
    assert any(p.name.startswith("sharpness-") for p in tmp_path.iterdir())
    b = rung_ratios(f, SHARPNESS_RUNGS, tmp_path)
    assert np.array_equal(a, b) and a.shape == (len(SHARPNESS_RUNGS),)


def test_rule_choice():
    """Slopes up to SHARPNESS_FROM × slack keep their rungs; beyond, the sharpened slope picks the
    rung, never one at or below SHARPNESS_FROM, and never more nodes than without κ."""
    slack = 1.5
    s = np.linspace(0.01, 6.0, 400)[:, None]
    plain = rule_codes(s, 0 * s, slack, FAST_LADDER_M34)
    sharp = rule_codes(s, 0 * s, slack, FAST_LADDER_M34, (0.5 * s, 0 * s))
    low = s[:, 0] <= SHARPNESS_FROM * slack
    assert np.array_equal(plain[low], sharp[low])
    first_beyond = min(n for b, n in FAST_LADDER_M34 if b > SHARPNESS_FROM)
    assert np.all(sharp[~low] >= first_beyond)
    assert np.all(points_per_tuple(sharp) <= points_per_tuple(plain))
    assert np.sum(points_per_tuple(sharp)) < 0.6 * np.sum(points_per_tuple(plain))


def _kernel(seed, n, var):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    X[1] = X[0] + 0.2 * rng.standard_normal(3)
    K = X @ X.T
    d = np.sqrt(np.diag(K))
    return var * K / np.outer(d, d)


@pytest.mark.parametrize("name", ["softplus", "gelu", "swish", "erf"])
def test_accuracy_kept_at_large_variance(name):
    """Four-point expectations σ'σ'σσ at variance 10 (the grid's C_W = 2 layers), every index
    tuple of four inputs, by the fast path (``method="fast"``: the erf family's ``auto`` is its
    closed form): with the sharpness (fewer nodes) it agrees with the rules without it within 1e-8
    of the largest entry (against uniform rules on the grid's own kernels:
    scripts/validate_sharpness.py, docs/gaussian.md; against the exact cone method:
    tests/test_gaussian_bigvar.py, which runs with the sharpness)."""
    s0 = parse_activation(name).expr
    factors = [sp.diff(s0, z), sp.diff(s0, z), s0, s0]
    K = _kernel(4, 4, 10.0)
    with Quadrature(Settings(jit=False, threads=1)) as quad:
        on = expectation_tensor(factors, K, method="fast", quadrature=quad)
    with Quadrature(Settings(jit=False, threads=1), sharpness=False) as quad:
        off = expectation_tensor(factors, K, method="fast", quadrature=quad)
    assert np.max(np.abs(on - off)) < 1e-8 * np.max(np.abs(off))
