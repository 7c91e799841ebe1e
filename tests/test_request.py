"""Correlator requests E[...] / Ec[...]: parsing, decomposition, naming, and the Monte Carlo check.

The sampled check uses layer 2, where the first-order result is exact (layer 1 is Gaussian and
layer-2 moments of these correlators involve at most two neuron sums), so a small width (n = 4)
makes the 1/n coefficients large compared with the statistical error; the same comparison with
the order-0 coefficients alone must fail, so the test can catch a wrong 1/n term.
"""
import numpy as np
import pytest
import sympy as sp

import ntkdiagrams as nd
from ntkdiagrams.numerics.activations import parse_activation
from ntkdiagrams.cli import main
from ntkdiagrams.sampling.model import ModelSpec
from ntkdiagrams.errors import ExpressionError, UnsupportedError
from ntkdiagrams.sampling.requests import sample_request
from ntkdiagrams.engine.derivation import derive
from ntkdiagrams.engine.request import decompose, derive_request, parse_request
from ntkdiagrams.language.rulefile import load_rules

RULES = load_rules("mlp")
X = np.array([[1.0, 0.3, -0.5], [0.2, -1.1, 0.4]])
HYPER = dict(cb=0.1, cw=1.5, lb=0.7, lw=1.3)


@pytest.mark.parametrize("text, where, what", [
    ("E[dHH(i0,i1,i2;a0,a1,a2) z(i3;a3)]", 3, "unknown field 'dHH'"),
    ("E[dH(i0,i1;a0,a1,a2) z(i3;a3)]", 3, "takes 3 neuron and 3 input indices"),
    ("E[z(i1;a1) z(i2;a2)", 20, "missing the closing ']'"),
    ("F[z(i1;a1)]", 1, "starts with E[ (full moment) or Ec["),
    ("E[z(i1;a1) z(a1;i2)]", 14, "used both as a neuron index and as an input label"),
    ("E[z(n;a1) z(i2;a2)]", 5, "reserved"),
    ("E[z(i1;a1) z(i2;a2)] extra", 22, "unexpected text after the closing"),
    ("E[z(i1;a1) + z(i2;a2)]", 12, "unexpected character '+'"),
    ("E[]", 3, "expected a field"),
])
def test_malformed_requests_point_at_the_offending_part(text, where, what):
    with pytest.raises(ExpressionError) as exc:
        parse_request(text, RULES)
    msg = str(exc.value)
    assert what in msg
    assert f"column {where}:" in msg


def test_parse_with_and_without_semicolon():
    a = parse_request("E[H(i1,i2;a1,a2) z(i3;a3)]", RULES)
    b = parse_request("E[H(i1, i2, a1, a2) * z(i3, a3)]", RULES)
    assert a.legs == b.legs
    assert [str(i) for i in a.neurons] == ["i1", "i2", "i3"]
    assert [str(x) for x in a.labels] == ["a1", "a2", "a3"]


def test_decompose_groups_delta_products_into_partitions():
    i1, i2, i3 = sp.symbols("i1:4")
    T = sp.Symbol("T")
    e = sp.KroneckerDelta(i1, i2) * T + sp.KroneckerDelta(i2, i1) * 2 * T + sp.KroneckerDelta(i1, i3) ** 2
    d = decompose(e, (i1, i2, i3))
    assert d == {((i1, i2),): 3 * T, ((i1, i3),): 1}


def test_two_point_request_is_K_plus_G1():
    res = nd.derive_request("E[z(i1;a1) z(i2;a2)]", order=1)
    got = [(s.name, s.order, tuple(tuple(map(str, b)) for b in s.deltas)) for s in res.structures]
    assert got == [("K", 0, (("i1", "i2"),)), ("G1", 1, (("i1", "i2"),))]


@pytest.mark.slow
def test_permuted_legs_are_recognised_as_V_with_permuted_slots():
    res = derive_request("Ec[z(i3;a3) z(i1;a1) z(i4;a4) z(i2;a2)]")
    assert {s.name for s in res.structures} == {"V"}
    found = {tuple(map(str, s.deltas[0])) + tuple(map(str, s.deltas[1])): tuple(map(str, s.args))
             for s in res.structures}
    # δ(i3,i1)δ(i4,i2): V_{(a3 a1)(a4 a2)} up to V's symmetries
    V = derive("V").target.func
    a = {str(s): s for s in sp.symbols("a1:5")}
    got = found[("i3", "i1", "i4", "i2")]
    assert V(1, *[a[x] for x in got]) == V(1, a["a1"], a["a3"], a["a2"], a["a4"])
    assert len(res.structures) == 3


@pytest.mark.slow
def test_dNTK_request_is_P_and_Q():
    res = derive_request("E[dH(i0,i1,i2;a0,a1,a2) z(i3;a3)]")
    assert res.order == 1
    assert sorted(s.name for s in res.structures) == ["P", "Q", "Q"]
    assert "P_{a_{0} a_{1} a_{2} a_{3}}" in res.latex()


def test_power_counting_and_parity():
    with pytest.raises(UnsupportedError, match="order 1/n\\^2"):
        derive_request("Ec[z(i1;a1) z(i2;a2) z(i3;a3) z(i4;a4) z(i5;a5) z(i6;a6)]")
    with pytest.raises(UnsupportedError, match="first order"):
        derive_request("E[z(i1;a1) z(i2;a2)]", order=2)
    assert derive_request("Ec[z(i1;a1) H(i2,i3;a2,a3)]").structures == []


def _check_against_sampler(text, patterns, order, samples=100_000, width=4):
    res = derive_request(text, order=order)
    model = ModelSpec(parse_activation("tanh"), depth=2, width=width, inputs=X, **HYPER)
    layers = nd.evaluate_request(res, "tanh", 2, X, **HYPER)
    out = []
    for p in patterns:
        mc = sample_request(res, model, p, samples, batches=20, seed=7)[1]
        pred = res.predict(layers[1], p, width)
        low = sum(layers[1][res.key(s)] / width ** s.order for s in res.structures
                  if s.satisfied_by(p) and s.order < max(res.orders))
        z = np.abs(mc["mean"] - pred) / mc["stderr"]
        z_low = np.abs(mc["mean"] - low) / mc["stderr"]
        out.append((z.max(), z_low.max()))
    return res, out


@pytest.mark.parametrize("text, patterns, order, new", [
    # full four-point moment at order 1/n: K K + (K G1 + G1 K + V)/n, new tensors M0_*, M1_*
    ("E[z(i1;a1) z(i2;a2) z(i3;a3) z(i4;a4)]", [dict(i1=0, i2=0, i3=1, i4=1), dict(i1=0, i2=0, i3=0, i4=0)], 1,
     {"M0_zzzz_1", "M1_zzzz_4"}),
    # full NTK-preactivation moment: Θ K + (Θ1 K + Θ G1 + D)/n; the δ(i1,i3)δ(i2,i4) piece is F
    ("E[H(i1,i2;a1,a2) z(i3;a3) z(i4;a4)]", [dict(i1=0, i2=0, i3=1, i4=1), dict(i1=0, i2=1, i3=0, i4=1)], 1,
     {"M0_Hzz_1", "M1_Hzz_2", "F"}),
    # one neuron, connected: V(12)(34) + V(13)(24) + V(14)(23), a new tensor
    ("Ec[z(i;a1) z(i;a2) z(i;a3) z(i;a4)]", [dict(i=0)], None, {"C1_zzzz_1"}),
])
@pytest.mark.slow
def test_requests_confirmed_by_the_sampler(text, patterns, order, new):
    res, zs = _check_against_sampler(text, patterns, order)
    assert new <= {s.name for s in res.structures}
    for z, z_low in zs:
        assert z < 4.5, f"{text}: prediction off by {z:.1f} standard errors"
        assert z_low > 8, f"{text}: the 1/n coefficients are not resolved (order-0 only: {z_low:.1f}σ)"


def test_cli_derive_request(capsys):
    assert main(["derive", "E[z(i1;a1) z(i2;a2)]", "--order", "1"]) == 0
    out = capsys.readouterr().out
    assert "δ(i1,i2) · K(a1,a2)" in out and "(1/n) [δ(i1,i2) · G1(a1,a2)]" in out
    assert main(["derive", "E[zz(i1;a1)]"]) == 2
    assert "unknown field 'zz'" in capsys.readouterr().err
    assert main(["derive", "V", "E[z(i1;a1) z(i2;a2)]"]) == 2


@pytest.mark.slow
def test_full_moments_are_written_through_named_cumulants():
    """E[zzzz] = Σ_partitions Π κ: the order-1 coefficient is K·G1 + G1·K + V, and the engine's
    coefficient equals that product of the named recursions symbolically (checked at derive)."""
    res = derive_request("E[z(i1;a1) z(i2;a2) z(i3;a3) z(i4;a4)]", order=1)
    s = next(s for s in res.structures if s.order == 1 and [list(map(str, b)) for b in s.deltas] == [["i1", "i2"], ["i3", "i4"]])
    assert sorted(n for _c, fs in s.expansion for n, _a in fs) == ["G1", "G1", "K", "K", "V"]
    assert "K(a1,a2)·G1(a3,a4) + G1(a1,a2)·K(a3,a4) + V(a1,a2,a3,a4)" in res.text()
    hzz = derive_request("E[H(i1,i2;a1,a2) z(i3;a3) z(i4;a4)]", order=1)
    assert "Theta(a1,a2)·G1(a3,a4) + Theta1(a1,a2)·K(a3,a4) + D(a1,a2,a3,a4)" in hzz.text()


def test_cli_evaluate_request(tmp_path):
    out = tmp_path / "r.json"
    assert main(["evaluate", "--request", "E[z(i1;a1) z(i2;a2)]", "--order", "1", "--activation", "tanh",
                 "--depth", "2", "--width", "8", "--random", "2,3", "--out", str(out)]) == 0
    import json
    doc = json.loads(out.read_text())
    assert [s["tensor"] for s in doc["meta"]["structures"]] == ["K@0", "G1@1"]
    ref = nd.evaluate("tanh", 2, np.array(doc["meta"]["inputs"]), stats=["K", "G1"])
    assert np.allclose(doc["layers"][1]["G1@1"], ref[1]["G1"]) and np.allclose(doc["layers"][1]["K@0"], ref[1]["K"])
    assert main(["evaluate", "--request", "E[z(i1;a1) q(i2;a2)]", "--activation", "tanh", "--depth", "2",
                 "--width", "8", "--random", "2,3", "--out", str(tmp_path / "bad.json")]) == 2
    assert not (tmp_path / "bad.json").exists()


@pytest.mark.slow
def test_latex_with_coinciding_input_labels():
    """Coinciding labels square an activation inside an expectation: the LaTeX printer must cope."""
    tex = derive_request("Ec[z(i;a1) z(i;a2) z(i;b) z(i;b)]").latex()
    assert r"\left(\sigma_{b}\right)^{2}" in tex
    assert r"\mathbb{E}_c\left[z_{i;a_{1}}" in tex


@pytest.mark.parametrize("text", ["Ec[z(i1;a1) z(i2;a2) z(i3;a3) z(i4;a4)]", "Ec[z(i1;a) z(i2;a) z(i3;b) z(i4;b)]",
                                  "E[z(i1;a1) z(i2;a2) z(i3;a3) z(i4;a4)]"])
def test_structures_renamed_by_leg_symmetry_equal_the_direct_sum(text):
    """derive_request derives one Kronecker structure per orbit of the legs' symmetries and renames
    it onto the others; every structure must equal the coefficient read off the sum over all Wick
    contractions at once (symbolic neuron indices), at layer ℓ+1 and at layer 1."""
    from ntkdiagrams.engine.derivation import assemble
    from ntkdiagrams.language.algebra import ell
    from ntkdiagrams.language.rulefile import ExpansionTerm
    res = derive_request(text, order=1)
    legs, nback, _aback = res.request.internal()
    neurons = tuple(dict.fromkeys(i for leg in legs for i in leg.neurons))
    labels = tuple(dict.fromkeys(a for leg in legs for a in leg.inputs))
    inv = {v: k for k, v in nback.items()}
    term = ExpansionTerm(frozenset(), "check", labels, sp.Integer(1), 1)
    layer = assemble(RULES, legs, term, ell, RULES.width, first_layer=False, connected=res.request.connected,
                     check_lower=False)
    first = assemble(RULES, legs, term, sp.Integer(0), RULES.input_width, first_layer=True,
                     connected=res.request.connected, check_lower=False)
    direct, direct0 = decompose(layer.rhs, neurons), decompose(first.rhs, neurons)
    got = {tuple(tuple(inv[i] for i in b) for b in s.deltas): s for s in res.structures if s.order == 1}
    assert set(got) == set(direct) and len(got) >= 3
    for part, s in got.items():
        assert sp.expand(s.recursion.rhs - direct[part]) == 0, part
        assert sp.expand(s.recursion.initial - direct0.get(part, 0)) == 0, part
        assert sp.expand(sp.Add(*[d.total for d in s.recursion.diagrams]) - direct[part]) == 0, part
