"""Critical points, universality classes and depth scaling (ntkdiagrams.analysis.criticality)."""
import json
import math

import numpy as np
import pytest

from ntkdiagrams.analysis.criticality import (CONSTANT_RTOL, RATIOS, critical_point, depth_scaling, fit_tail, gaussian_1d,
                                     susceptibilities)
from ntkdiagrams.errors import ActivationError, InputError, NtkDiagramsError


@pytest.mark.parametrize("name, cw", [("relu", 2.0), ("leaky_relu:0.2", 2 / (1 + 0.04)), ("linear", 1.0)])
def test_scale_invariant(name, cw):
    cp = critical_point(name)
    assert cp.universality == "scale-invariant"
    assert cp.cb == 0.0 and cp.cw == pytest.approx(cw, rel=1e-14)
    assert cp.K_star is None
    assert cp.chi_parallel == pytest.approx(1, abs=1e-12) and cp.chi_perp == pytest.approx(1, abs=1e-12)
    # every K is a fixed point with both susceptibilities 1 (kinks handled exactly, not smoothed)
    for K in (0.3, 7.0):
        s = susceptibilities(name, K, 0.0, cw)
        assert s["f"] == pytest.approx(K, rel=1e-12)
        assert s["chi_parallel"] == pytest.approx(1, abs=1e-12) and s["chi_perp"] == pytest.approx(1, abs=1e-12)


@pytest.mark.parametrize("name, cw, a1", [("tanh", 1.0, -2.0), ("erf", math.pi / 4, -2.0), ("sin", 1.0, -1.0)])
def test_k_star_zero_class(name, cw, a1):
    cp = critical_point(name)
    assert cp.universality == "K*=0"
    assert cp.cb == 0.0 and cp.K_star == 0.0
    assert cp.cw == pytest.approx(cw, rel=1e-14)
    assert cp.a1 == pytest.approx(a1, rel=1e-14)       # a1 = sigma3/sigma1 + 3/4 (sigma2/sigma1)^2
    assert cp.p_perp == pytest.approx(1.0, rel=1e-14)  # b1/a1 = 1 for odd activations with sigma3 != 0
    # chi's tend to 1 as K -> 0 at the critical point, with the slope b1 = a1 here
    s = susceptibilities(name, 1e-4, 0.0, cw)
    assert s["chi_perp"] == pytest.approx(1 + cp.b1 * 1e-4, abs=1e-6)
    assert s["chi_parallel"] == pytest.approx(1 + 2 * cp.a1 * 1e-4, abs=1e-6)  # f' = 1 + 2 a1 K


def test_half_stable_gelu_against_mpmath():
    cp = critical_point("gelu")
    assert cp.universality == "half-stable"
    assert cp.chi_parallel == pytest.approx(1, abs=1e-9) and cp.chi_perp == pytest.approx(1, abs=1e-12)
    # independent 30-digit reference: root of <sigma sigma''>_K by mpmath quadrature
    ref = critical_point("gelu", precise=True)
    assert cp.K_star == pytest.approx(ref.K_star, rel=1e-9)
    assert cp.cb == pytest.approx(ref.cb, rel=1e-8) and cp.cw == pytest.approx(ref.cw, rel=1e-10)
    assert ref.K_star == pytest.approx((3 + math.sqrt(17)) / 2, rel=1e-12)   # observed, see docs
    assert (ref.cb, ref.cw) == (pytest.approx(0.17292239, abs=1e-7), pytest.approx(1.98305826, abs=1e-7))
    assert ref.a1 < 0 and cp.attracts_from == "above"
    # the K = 0 point is formally critical (C_W = 4) but repelling: listed, not accepted
    zero = [c for c in cp.candidates if c["K_star"] == 0.0]
    assert zero and not zero[0]["accepted"] and zero[0]["cw"] == pytest.approx(4.0)


def test_half_stable_swish():
    cp = critical_point("swish")
    assert cp.universality == "half-stable"
    assert cp.K_star == pytest.approx(14.3201736, rel=1e-7)
    assert cp.cb == pytest.approx(0.5551432, rel=1e-6) and cp.cw == pytest.approx(1.9880047, rel=1e-7)


def test_half_stable_z_tanh_is_swish_even_part():
    # swish(2z) = z + z tanh z and <z e''> = 0 for even e: same h(K), so K*(z tanh z) = K*(swish)/4
    cp = critical_point("z*tanh(z)")
    assert cp.universality == "half-stable"
    assert cp.K_star == pytest.approx(critical_point("swish").K_star / 4, rel=1e-9)


@pytest.mark.parametrize("name", ["softplus", "sigmoid", "z**2"])
def test_no_criticality(name):
    cp = critical_point(name)
    assert cp.universality == "none" and not cp.critical
    assert cp.cb is None and cp.cw is None
    with pytest.raises(InputError, match="no critical point"):
        depth_scaling(name, 4, stats=["V"], point=cp)


def test_bad_activation():
    with pytest.raises(ActivationError):
        critical_point("tanh(")
    with pytest.raises(ActivationError):
        critical_point("foo(z)")
    with pytest.raises(ActivationError):
        critical_point(3.0)
    with pytest.raises(InputError):
        critical_point("tanh", k_min=0.0)
    with pytest.raises(InputError):
        depth_scaling("relu", 2)
    with pytest.raises(InputError, match="unknown statistic"):
        depth_scaling("relu", 5, stats=["X"])
    with pytest.raises(InputError):
        depth_scaling("relu", 5, stats=["V"], cb=0.0)
    with pytest.raises(InputError):
        gaussian_1d(np.float64(1.0), [-1.0])


def test_relu_v_exact():
    ds = depth_scaling("relu", 10, stats=["V"])
    ell = np.arange(1, 11)
    assert np.allclose(ds.K, 1.0, atol=1e-13)
    assert np.allclose(ds.ratios["V"], 5 * (ell - 1), rtol=1e-12, atol=1e-11)
    assert ds.fits["V"]["p"] == pytest.approx(1.0, abs=1e-10)
    assert ds.fits["V"]["slope"] == pytest.approx(5.0, rel=1e-12)


def test_tanh_v_slope_two_thirds():
    ds = depth_scaling("tanh", 60, stats=["V"])
    # V/K^2 -> (2/3) l for the K*=0 class (PDLT); the tail slope converges slowly (log corrections)
    assert ds.fits["V"]["slope"] == pytest.approx(2 / 3, abs=0.02)
    assert ds.fits["V"]["p"] == pytest.approx(1.0, abs=0.03)
    assert ds.leading["K"]["p"] == pytest.approx(-1.0, abs=0.08)    # K ~ 1/(2 l)
    assert ds.K[-1] * 60 == pytest.approx(0.5, rel=0.1)


def test_fit_tail():
    ell = np.arange(10, 21)
    f = fit_tail(ell, 3 * ell ** 2 + 7)
    assert f["p"] == pytest.approx(2.0, abs=0.02) and f["method"] == "increments"
    assert fit_tail(ell, np.zeros(11))["kind"] == "zero"
    assert fit_tail(ell, ell - 15.0)["kind"] == "sign change"


def test_constant_has_no_exponent():
    """A quantity that changes only by rounding is "constant", not a power law fitted to noise."""
    ell = np.arange(5, 11)
    noise = 1.0 + np.array([0.0, 2.2e-16, -1.1e-16, 4.4e-16, 0.0, 6.7e-16])
    f = fit_tail(ell, noise)
    assert f["kind"] == "constant" and f["p"] is None and f["c"] is None and f["slope"] is None
    assert f["rel_variation"] < 1e-15
    assert fit_tail(ell, 2.0 + 1e-10 * ell)["kind"] == "constant"
    g = fit_tail(ell, 2.0 + 1e-8 * ell)                    # a real change, however small, keeps its exponent
    assert g["kind"] == "power" and g["p"] == pytest.approx(1.0, abs=1e-6)
    assert g["rel_variation"] > CONSTANT_RTOL


def test_relu_k_is_constant_not_a_power_law():
    ds = depth_scaling("relu", 10, stats=["V"])
    assert ds.leading["K"]["kind"] == "constant" and ds.leading["K"]["p"] is None
    assert ds.leading["Theta"]["kind"] == "power" and ds.leading["Theta"]["p"] == pytest.approx(1.0, abs=1e-9)
    text = ds.text()
    assert "K^(L) = 1 (constant: relative variation" in text and "no exponent" in text
    assert "Theta^(L) = 15 (p = 1.0000)" in text
    # tanh's K does flow (K ~ 1/(2l)): an exponent
    assert depth_scaling("tanh", 12, stats=["V"]).leading["K"]["kind"] == "power"


def test_ratios_cover_first_order_tensors():
    assert set(RATIOS) == {"G1", "V", "Theta1", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U"}


def test_cli_json(capsys):
    from ntkdiagrams.cli import main
    assert main(["critical", "--activation", "relu", "--depth", "5", "--stats", "V", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["critical_point"]["universality"] == "scale-invariant"
    assert doc["depth_scaling"]["ratios"]["V"][-1] == pytest.approx(20.0, rel=1e-12)


def test_cli_bad_activation(capsys):
    from ntkdiagrams.cli import main
    assert main(["critical", "--activation", "nosuch(z)"]) == 2
    assert "error" in capsys.readouterr().err


def test_errors_are_package_errors():
    with pytest.raises(NtkDiagramsError):
        critical_point("")
