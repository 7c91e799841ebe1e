"""Order 1/n²: Stage B with second-order blobs and pairs of first-order blobs (rules/mlp2.toml).

Deep linear networks (σ(z) = z, C_b = 0, one input) are solved exactly (PDLT ch. 3): given layer ℓ
the preactivations of layer ℓ+1 are i.i.d. N(0, s_ℓ) with s_{ℓ+1} = (C_W/n) Σ_j z_j², so
Σ_j z_j² = s_ℓ χ²_n and E[s_{ℓ+1}^k] = C_W^k Π_{m<k}(1 + 2m/n) E[s_ℓ^k], s_1 = K^{(1)}.  The one-neuron
cumulants follow from the moments of s: E[z²] = E[s] (so G = K exactly), κ4 = 3 Var(s) = 3 (V + V1/n)/n,
κ6 = 15 κ3(s) = 15 V6/n².  The derived recursions, with σ = z substituted symbolically, must give
these numbers layer after layer.
"""
from __future__ import annotations

import pytest
import sympy as sp

import ntkdiagrams as nd
from ntkdiagrams.errors import UnsupportedError
from ntkdiagrams.language.algebra import (ActivationDerivative, GaussianExpectation, LayerTensor, Z, ell,
                                          isserlis)

n = sp.Symbol("n", positive=True)
C_W = sp.Symbol("C_W", real=True)
K1 = sp.Symbol("K1", positive=True)
LAYERS = (1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def recs():
    """The preactivation sector of mlp2, derived once (G2 ~2 s, V1 and V6 longer)."""
    return {t: nd.derive(t, "mlp2") for t in ("K", "G1", "V", "G2", "V1", "V6")}


# ---- deep linear closed forms, derived here ----

def _moments_of_s(layer: int, kmax: int = 3) -> list:
    """E[s_ℓ^k], k = 0..kmax, for the deep linear network: s_1 = K1, each layer multiplies
    E[s^k] by C_W^k Π_{m<k}(1 + 2m/n) (E[(χ²_n)^k] = n(n+2)⋯(n+2k−2))."""
    out = []
    for k in range(kmax + 1):
        per_layer = C_W ** k * sp.Mul(*[1 + 2 * sp.Integer(m) / n for m in range(k)])
        out.append(K1 ** k * per_layer ** (layer - 1))
    return out


def _series(expr, order: int) -> list:
    """Coefficients of 1/n^0 … 1/n^order of an expression in n."""
    eps = sp.Symbol("eps")
    s = sp.series(sp.expand(expr).subs(n, 1 / eps), eps, 0, order + 1).removeO()
    return [sp.expand(s.coeff(eps, k)) for k in range(order + 1)]


def linear_closed_forms(layer: int) -> dict:
    """One input: K, G1, G2 (two-point), V, V1 (four-point), V6 (six-point) of layer ℓ."""
    m = _moments_of_s(layer)
    two = _series(m[1], 2)                                   # E[z²] = E[s]
    var = _series(n * (m[2] - m[1] ** 2), 1)                  # V + V1/n = n Var(s)
    k3 = _series(n ** 2 * (m[3] - 3 * m[2] * m[1] + 2 * m[1] ** 3), 0)   # V6 = n² κ3(s)
    return {"K": two[0], "G1": two[1], "G2": two[2], "V": var[0], "V1": var[1], "V6": k3[0]}


def test_closed_forms_by_hand():
    """The closed forms above against the hand expansion: V = 2(ℓ−1)K², V1 = 2(ℓ−1)(ℓ−2)K²,
    V6 = 4(ℓ−1)(3ℓ−4)K³ with K = C_W^{ℓ−1} K1 (κ3 of χ²_n is 8n: V6 = 8K³ at layer 2)."""
    for layer in LAYERS:
        c = linear_closed_forms(layer)
        K = C_W ** (layer - 1) * K1
        L = layer - 1
        assert sp.expand(c["K"] - K) == 0 and c["G1"] == 0 and c["G2"] == 0
        assert sp.expand(c["V"] - 2 * L * K ** 2) == 0
        assert sp.expand(c["V1"] - 2 * L * (L - 1) * K ** 2) == 0
        assert sp.expand(c["V6"] - 4 * L * (3 * L - 1) * K ** 3) == 0


def _linear(expr: sp.Expr, layer: int, values: dict) -> sp.Expr:
    """Substitute σ(z) = z, C_b = 0, one input (every label a) and the layer-ℓ values."""
    a = sp.Symbol("a")
    expr = expr.xreplace({ell: sp.Integer(layer)})
    Kcls = type(next(iter(values["__K__"])))

    def lin(f):
        return f.replace(lambda e: isinstance(e, ActivationDerivative),
                         lambda e: e.args[1] if e.args[0] == 0 else (sp.Integer(1) if e.args[0] == 1 else sp.Integer(0)))
    rep = {g: isserlis(lin(g.args[0]), g.args[1], Kcls) for g in expr.atoms(GaussianExpectation)}
    expr = sp.expand(expr.xreplace(rep))
    labels = {s: a for s in expr.free_symbols if s.name.startswith("alpha_")}
    expr = expr.xreplace(labels)
    tens = {t: values[t.tensor_name] for t in expr.atoms(LayerTensor)}
    C_b = sp.Symbol("C_b", real=True)
    x = sp.Function("x")
    return sp.expand(expr.xreplace(tens).subs(C_b, 0))


@pytest.mark.parametrize("name", ["G2", "V1", "V6"])
def test_deep_linear_second_order(recs, name):
    rules = nd.load_rules("mlp2")
    Kcls = rules.tensors["K"].cls
    rec = recs[name]
    for layer in LAYERS[:-1]:
        now = linear_closed_forms(layer)
        values = dict(now)
        values["__K__"] = {Kcls(sp.Integer(layer), sp.Symbol("a"), sp.Symbol("a"))}
        got = _linear(rec.rhs, layer, values)
        assert sp.expand(got - linear_closed_forms(layer + 1)[name]) == 0, (name, layer, got)


def _blob_terms(compact: sp.Expr) -> dict:
    """{sorted tensor names of a BlobSum term: its coefficient} of a compact right-hand side."""
    from ntkdiagrams.language.algebra import BlobSum
    out = {}
    for term in sp.Add.make_args(sp.expand(compact)):
        sums = [f for f in sp.Mul.make_args(term) if isinstance(f, BlobSum)]
        if len(sums) != 1:
            continue
        names = tuple(sorted(t.tensor_name for t in sp.Mul.make_args(sums[0].tensor)))
        coeff = sp.Mul(*[f for f in sp.Mul.make_args(term) if not isinstance(f, BlobSum)])
        out[names] = out.get(names, 0) + coeff
    return out


def test_one_neuron_edgeworth_weights(recs):
    """G2 is C_W times the 1/n² part of E[σσ] at one neuron: exp(½G1∂² + ⅛V∂⁴ + …) at second
    order, ½G2∂² + ⅛V1∂⁴ + (1/48)V6∂⁶ + ½(½G1∂² + ⅛V∂⁴)² — weights generated, checked by hand."""
    C = sp.Symbol("C_W", real=True)
    got = _blob_terms(recs["G2"].compact)
    want = {("G2",): C / 2, ("V1",): C / 8, ("V6",): C / 48, ("G1", "G1"): C / 8, ("G1", "V"): C / 16,
            ("V", "V"): C / 128}
    assert got == want
    assert recs["G2"].initial == 0


def test_first_order_unchanged_in_mlp2():
    """The first-order recursions from mlp2 equal those from mlp (the new blobs are O(1/n²))."""
    for t in ("K", "G1", "V", "Theta", "Theta1", "D", "F"):
        a, b = nd.derive(t, "mlp"), nd.derive(t, "mlp2")
        assert sp.expand(a.rhs - b.rhs) == 0 and sp.expand(a.initial - b.initial) == 0, t
        assert sp.expand(a.compact - b.compact) == 0, t


def test_order_three_refused():
    with pytest.raises(UnsupportedError, match=r"1/n\^3.*order 1/n\^2"):
        nd.derive_request("E[z(i1;a1) z(i2;a2)]", "mlp2", order=3)
    with pytest.raises(UnsupportedError, match="weight 8"):
        nd.derive_request("Ec[z(i1;a1) z(i2;a2) z(i3;a3) z(i4;a4) z(i5;a5) z(i6;a6) z(i7;a7) z(i8;a8)]", "mlp2")
    # the first-order rule file keeps its refusal
    with pytest.raises(UnsupportedError, match="first order in 1/n"):
        nd.derive_request("E[z(i1;a1) z(i2;a2)]", "mlp", order=2)


def test_deep_linear_ntk_mean_has_no_second_order_correction(recs):
    """Deep linear networks: E[H^(ℓ+1)] = λ_b + λ_W E[z z] + C_W E[H^(ℓ)] with E[z z] = K exactly, so
    Θ1 = Θ2 = 0 at every layer; the derived Θ2 recursion must keep Θ2 at 0 (every term with the
    NTK-preactivation cumulants D1, F1, D6, F6 carries σ'' = 0)."""
    rules = nd.load_rules("mlp2")
    Kcls = rules.tensors["K"].cls
    rec = nd.derive("Theta2", "mlp2")
    assert rec.initial == 0
    for layer in (1, 2, 3):
        values = dict(linear_closed_forms(layer))
        values.update({"Theta": sp.Symbol("Th"), "Theta1": 0, "Theta2": 0})
        values["__K__"] = {Kcls(sp.Integer(layer), sp.Symbol("a"), sp.Symbol("a"))}
        assert _linear(rec.rhs, layer, values) == 0


def test_two_point_request_at_second_order():
    """E[z z] at order 2 is δ(K + G1/n + G2/n²), the tensors recognised by name."""
    res = nd.derive_request("E[z(i1;a1) z(i2;a2)]", "mlp2", order=2)
    assert sorted((s.order, s.name) for s in res.structures) == [(0, "K"), (1, "G1"), (2, "G2")]


@pytest.mark.slow
def test_six_point_request_is_V6_on_every_pairing():
    """Ec[z z z z z z] at 1/n² (weight 6): the 15 pairings of the neurons, each V6 with its inputs
    grouped by the pairs (rules/mlp2.toml), derived from one pairing and renamed onto the others."""
    res = nd.derive_request("Ec[z(i1;a1) z(i2;a2) z(i3;a3) z(i4;a4) z(i5;a5) z(i6;a6)]", "mlp2", order=2)
    assert res.order == 2 and len(res.structures) == 15
    assert {(s.name, s.order, s.coefficient) for s in res.structures} == {("V6", 2, 1)}
    V6 = nd.load_rules("mlp2").tensors["V6"].cls
    a = {f"a{k}": sp.Symbol(f"a{k}") for k in range(1, 7)}
    for s in res.structures:
        pairs = [tuple(str(i).replace("i", "a") for i in b) for b in s.deltas]
        assert len(pairs) == 3
        expected = [a[x] for p in pairs for x in p]
        assert V6(1, *[a[str(x)] for x in s.args]) == V6(1, *expected), s.deltas


@pytest.mark.slow
def test_four_point_moment_at_second_order_through_cumulants():
    """E[z z z z] at 1/n²: each pairing's coefficient is K·G2 + G1·G1 + G2·K + V1 (moments from the
    connected correlators), which the engine keeps only after checking it symbolically against its
    own coefficient at layer ℓ+1 and layer 1."""
    res = nd.derive_request("E[z(i1;a1) z(i2;a2) z(i3;a3) z(i4;a4)]", "mlp2", order=2)
    second = [s for s in res.structures if s.order == 2]
    assert len(second) == 3 and res.orders == [0, 1, 2]
    for s in second:
        factors = sorted(tuple(name for name, _args in fs) for _c, fs in s.expansion)
        assert factors == [("G1", "G1"), ("G2", "K"), ("K", "G2"), ("V1",)], s.deltas
