"""Architectures as data: the residual MLP (rules/resmlp.toml) and the bias-free MLP
(rules/mlp_nobias.toml) derive every first-order tensor from their layer maps alone.

* ξ = 0 turns every residual recursion into the MLP's, symbolically (all 15 tensors);
* the infinite-width facts K^{(ℓ+1)} = ξ² K + C_b + C_W ⟨σσ⟩_K and
  Θ^{(ℓ+1)} = λ_b + λ_W ⟨σσ⟩_K + (ξ² + C_W ⟨σ'σ'⟩_K) Θ, typed by hand;
* the deep linear residual network (σ(z) = z, C_b = 0): K and V against a hand derivation by the
  law of total cumulance, and the iterated recursions against the exact finite-width E[|z|⁴];
* the bias-free file has no C_b, λ_b anywhere and equals the MLP at C_b = λ_b = 0;
* the Kronecker decomposition stays complete (all-equal neurons give the sum of the structures),
  and the truncation guard still refuses what the first-order blobs cannot give.
"""
import itertools

import pytest
import sympy as sp

import ntkdiagrams as nd
from ntkdiagrams.engine.derivation import assemble, derive_uncached
from ntkdiagrams.errors import UnsupportedError
from ntkdiagrams.language.algebra import InputGram, Z, ell, gexp, sigma
from ntkdiagrams.language.rulefile import ExpansionTerm, Leg, load_rules, parse_rules
from ntkdiagrams.numerics.activations import z as zsym
from ntkdiagrams.numerics.closedforms import substitute_activation

TENSORS = ["K", "G1", "V", "Theta", "Theta1", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U"]
xi, C_b, C_W, lambda_b, lambda_W = sp.symbols("xi C_b C_W lambda_b lambda_W", real=True)
a1, a2, a3, a4 = sp.symbols("alpha_1:5")
RES = load_rules("resmlp")
K = RES.tensors["K"].cls
V = RES.tensors["V"].cls
G1 = RES.tensors["G1"].cls
Theta = RES.tensors["Theta"].cls


def E(f):
    return gexp(f, ell)


def s(a, k=0):
    return sigma(Z(a), k)


# ---- (a) ξ = 0 is the MLP ----

# the two-point and NTK-mean tensors in the fast subset; the rest derive the whole residual set (slow)
@pytest.mark.parametrize("name", [n if n in ("K", "G1", "V", "Theta", "Theta1") else
                                  pytest.param(n, marks=pytest.mark.slow) for n in TENSORS])
def test_residual_recursions_at_xi_zero_are_the_mlp_recursions(name):
    res, mlp = nd.derive(name, "resmlp"), nd.derive(name)
    assert res.rhs.has(xi) or name in ()          # the shortcut enters every recursion
    assert sp.expand(res.rhs.xreplace({xi: 0}) - mlp.rhs) == 0
    assert sp.expand(res.compact.xreplace({xi: 0}) - mlp.compact) == 0
    assert sp.expand(res.initial - mlp.initial) == 0  # the first layer is the MLP's
    # the diagrams carry the recursion: Σ multiplicity × value = rhs
    assert sp.expand(res.diagram_sum() - res.rhs) == 0


# ---- (b) infinite width ----

def test_residual_kernel_recursion():
    rec = nd.derive("K", "resmlp")
    oracle = xi ** 2 * K(ell, a1, a2) + C_b + C_W * E(s(a1) * s(a2))
    assert sp.expand(rec.rhs - oracle) == 0
    assert any(d.graph.nodes[v]["kind"] == "fixed" for d in rec.diagrams for v in d.graph)


def test_residual_frozen_ntk_recursion():
    """The identity path ξ ∂z^{(ℓ)}_i/∂θ of the chain rule gives ξ² Θ^{(ℓ)}."""
    rec = nd.derive("Theta", "resmlp")
    oracle = lambda_b + lambda_W * E(s(a1) * s(a2)) + (xi ** 2 + C_W * E(s(a1, 1) * s(a2, 1))) * Theta(ell, a1, a2)
    assert sp.expand(rec.rhs - oracle) == 0


# ---- (c) the deep linear residual network ----

def _linear(expr):
    """σ(z) = z, C_b = 0, λ_b = 0; Gaussian expectations of the polynomials by Isserlis."""
    out = substitute_activation(expr, zsym, K)
    return sp.expand(out.xreplace({C_b: 0, lambda_b: 0}))


def test_deep_linear_residual_kernel_and_four_point_vertex_by_hand():
    """Given layer ℓ, z' = ξ z + W z is Gaussian with mean m_i = ξ z_i and covariance
    δ_ik C_W Ĝ, Ĝ_{αβ} = Σ_j z_{j;α} z_{j;β} / n.  The law of total cumulance over the partitions of
    the four legs into conditional means (singletons) and covariances (pairs):

        κ(z'1, z'2, z'3, z'4) = ξ⁴ κ(z1, z2, z3, z4) + ξ² C_W [δ12 κ(Ĝ12, z3, z4) + 5 more]
                                + C_W² [δ12 δ34 Cov(Ĝ12, Ĝ34) + 2 more],

    with, at layer ℓ (κ(AB, C, D) = κ(A, B, C, D) + κ(A, C) κ(B, D) + κ(A, D) κ(B, C)),

        κ(Ĝ12, z3, z4) = δ34 [V(1234) + K13 K24 + K14 K23] / n + O(1/n²),
        Cov(Ĝ12, Ĝ34) = [V(1234) + K13 K24 + K14 K23] / n + O(1/n²),

    so K' = (ξ² + C_W) K and V'(1234) = (ξ² + C_W)² V(1234) + C_W (C_W + 2ξ²) (K13 K24 + K14 K23)."""
    k = lambda a, b: K(ell, a, b)  # noqa: E731
    assert _linear(nd.derive("K", "resmlp").rhs) == sp.expand((xi ** 2 + C_W) * k(a1, a2))
    oracle_v = (xi ** 2 + C_W) ** 2 * V(ell, a1, a2, a3, a4) + \
        C_W * (C_W + 2 * xi ** 2) * (k(a1, a3) * k(a2, a4) + k(a1, a4) * k(a2, a3))
    assert sp.expand(_linear(nd.derive("V", "resmlp").rhs) - oracle_v) == 0
    assert sp.expand(_linear(nd.derive("G1", "resmlp").rhs) - (xi ** 2 + C_W) * G1(ell, a1, a2)) == 0


def _exact_q2_step():
    """E[Q'² | z] / Q² for Q = |z|²/n, derived here from z' = ξ z + √(C_W Q) g, g ~ N(0, I_n): along
    z, g₁ ~ N(0, 1); across, |g_⊥|² ~ χ²_{n−1}.  Moments E g₁² = 1, E g₁⁴ = 3, E χ² = n − 1,
    E χ⁴ = (n − 1)(n + 1)."""
    n, Q, g1, chi = sp.symbols("n Q g1 chi", positive=True)
    nq2 = ((xi * sp.sqrt(n * Q) + sp.sqrt(C_W * Q) * g1) ** 2 + C_W * Q * chi) ** 2   # (n Q')²
    m_g1 = {0: 1, 1: 0, 2: 1, 3: 0, 4: 3}
    m_chi = {0: 1, 1: n - 1, 2: (n - 1) * (n + 1)}
    poly = sp.Poly(sp.expand(nq2), g1, chi)
    total = sum(c * m_g1[i] * m_chi[j] for (i, j), c in poly.terms())
    return n, sp.simplify(total / (n * Q) ** 2)


def test_deep_linear_residual_network_against_the_exact_finite_width_moment():
    """Iterate the engine's K, G1, V recursions (single input, σ = z, C_b = 0) and compare with the
    1/n coefficient of the exact E[Q_L²], Q = |z|²/n:  E[Q²] = G² + (2 G² + V)/n + O(1/n²) with
    G = K + G1/n (E[z_i⁴] = 3G² + 3V/n, E[z_i² z_k²] = G² + V/n)."""
    n, ratio = _exact_q2_step()
    assert sp.simplify(ratio - ((xi ** 2 + C_W) ** 2 + 2 * C_W * (C_W + 2 * xi ** 2) / n)) == 0
    g = sp.Symbol("g", positive=True)      # x·x/n0
    a = sp.Symbol("a")
    single = {a1: a, a2: a, a3: a, a4: a}
    recs = {t: _linear(nd.derive(t, "resmlp").rhs).xreplace(single) for t in ("K", "G1", "V")}
    firsts = {t: nd.derive(t, "resmlp").initial.xreplace(single).xreplace({C_b: 0, InputGram(a, a): g})
              for t in ("K", "G1", "V")}
    state = dict(firsts)
    eps = sp.Symbol("eps")
    exact = (C_W * g) ** 2 * (1 + 2 * eps)   # layer 1: Q_1 = C_W g χ²_n / n
    for _layer in range(4):
        first_order = sp.expand(2 * state["K"] * state["G1"] + 2 * state["K"] ** 2 + state["V"])
        assert sp.expand(state["K"] ** 2 - exact.subs(eps, 0)) == 0
        assert sp.expand(first_order - sp.expand(exact).coeff(eps, 1)) == 0
        rep = {K(ell, a, a): state["K"], G1(ell, a, a): state["G1"], V(ell, a, a, a, a): state["V"]}
        state = {t: sp.expand(r.xreplace(rep)) for t, r in recs.items()}
        exact = sp.expand(exact * ratio.subs(n, 1 / eps))
        exact = sp.expand(exact.series(eps, 0, 2).removeO())


# ---- (d) the bias-free MLP ----

@pytest.mark.parametrize("name", ["K", "G1", "V", "Theta", "Theta1"])
def test_bias_free_mlp_has_no_bias_and_is_the_mlp_at_zero_bias(name):
    rules = load_rules("mlp_nobias")
    assert "b" not in rules.parameters and "C_b" not in rules.symbols and "lambda_b" not in rules.symbols
    rec, mlp = nd.derive(name, "mlp_nobias"), nd.derive(name)
    for e in (rec.rhs, rec.initial, rec.compact):
        assert not e.has(C_b) and not e.has(lambda_b)
    assert sp.expand(rec.rhs - mlp.rhs.xreplace({C_b: 0, lambda_b: 0})) == 0
    assert sp.expand(rec.initial - mlp.initial.xreplace({C_b: 0, lambda_b: 0})) == 0
    if name == "K":
        assert sp.expand(rec.rhs - C_W * E(s(a1) * s(a2))) == 0


# ---- consistency of the Kronecker decomposition and the truncation ----

@pytest.mark.slow
def test_all_equal_neurons_give_the_sum_of_the_kronecker_structures():
    """κ(z_i, z_i, z_i, z_i) at one neuron: (V(1234) + V(1324) + V(1423))/n.  With shortcuts the
    fixed neurons could in principle add a structure δ_{i1 i2 i3 i4} the rule file does not declare;
    they do not."""
    st = RES.statistics["V"]
    legs = tuple(Leg("z", (sp.Integer(0),), (a,)) for a in (a1, a2, a3, a4))
    term = ExpansionTerm(frozenset(), "V", (a1, a2, a3, a4), sp.Integer(1), 1)
    got = assemble(RES, legs, term, ell, RES.width, first_layer=False, check_lower=False).rhs
    v = nd.derive("V", "resmlp")
    total = sp.Integer(0)
    for perm in [(a1, a2, a3, a4), (a1, a3, a2, a4), (a1, a4, a2, a3)]:
        total += v.rhs.xreplace(dict(zip(v.labels, perm)))
    assert st.legs and sp.expand(got - total) == 0


def test_truncation_guard_refuses_second_order_through_the_shortcut():
    """A 1/n² tensor of the two-point function needs the second-order blobs: refused, also for the
    shortcut path ξ² ⟨z z⟩ where no neuron sum brings a power of n.  (Declaring G2 makes the rule
    file a second-order one, whose coverage check then names the missing 1/n² part of V.)"""
    text = RES.source.replace("expansion = \"delta(i1, i2) * (K(a1, a2) + G1(a1, a2) / n)\"",
                              "expansion = \"delta(i1, i2) * (K(a1, a2) + G1(a1, a2) / n + G2(a1, a2) / n**2)\"")
    assert text != RES.source
    rules = parse_rules(text, "resmlp_g2.toml")
    with pytest.raises(UnsupportedError, match=r"only known up to|κ\(z, z, z, z\) stops at order 1/n\^1"):
        derive_uncached("G2", rules)


def test_requests_with_two_symbolic_fixed_neurons_are_refused():
    with pytest.raises(UnsupportedError, match="may\\s+coincide"):
        nd.derive_request("Ec[z(i1;a1) z(i2;a2) z(i3;a3) z(i4;a4)]", "resmlp")


def test_request_at_one_neuron_works_with_shortcuts():
    res = nd.derive_request("Ec[z(i;a1) z(i;a2)]", "resmlp")
    (s_,) = res.structures
    assert s_.name == "K"


def test_diagrams_of_the_residual_set_are_connected_and_carry_shortcuts():
    import networkx as nx
    rec = nd.derive("V", "resmlp")
    assert all(nx.is_connected(d.graph) for d in rec.diagrams)
    kinds = {k for d in rec.diagrams for *_e, k in d.graph.edges(data="kind")}
    assert "shortcut" in kinds
    assert "fixed neuron" in rec.diagram_table()
    for d in rec.diagrams:
        assert list(itertools.chain(d.graph.nodes))  # drawable graphs


# ---- per-layer widths: n_ℓ = r_ℓ n ----

def _mlp_with_widths():
    src = load_rules("mlp").source
    text = src.replace('width = "n" ', 'width_ratio = "r"\nwidth = "n" ', 1)
    assert text != src
    return parse_rules(text, "mlp_widths.toml")


@pytest.mark.parametrize("name", ["G1", "V", "Theta1", "B", "F"])
def test_width_ratios_multiply_every_blob_of_order_k_by_the_ratio_to_the_k(name):
    """Layer ℓ has n_ℓ = r_ℓ n neurons (the fan-in of layer ℓ+1) and its statistics are expanded in
    1/n_{ℓ−1}; the target in 1/n_ℓ.  A blob of order k of layer ℓ then enters with (n_ℓ/n_{ℓ−1})^k:
    the MLP recursion with every layer-ℓ tensor T of order k replaced by (r_ℓ/r_{ℓ−1})^k T
    (PDLT's n_ℓ/n_{ℓ−1} in front of V^{(ℓ)} in the V recursion)."""
    from ntkdiagrams.language.algebra import LayerTensor
    rules = _mlp_with_widths()
    r = rules.width_ratio
    rec, mlp = nd.derive(name, rules), nd.derive(name)
    order = {t.tensor: t.order for st in rules.statistics.values() for t in st.terms}
    ratio = r(ell) / r(ell - 1)
    expected = mlp.rhs.replace(lambda e: isinstance(e, LayerTensor) and order[e.tensor_name] > 0,
                               lambda e: ratio ** order[e.tensor_name] * e)
    assert sp.expand(rec.rhs - expected) == 0
    assert rec.rhs.has(r(ell - 1)) and sp.expand(rec.diagram_sum() - rec.rhs) == 0
    assert "r_{\\ell - 1}" in rec.latex()


def test_width_ratios_are_refused_with_a_shortcut():
    from ntkdiagrams.errors import RuleFileError
    text = RES.source.replace('width = "n" ', 'width_ratio = "r"\nwidth = "n" ', 1)
    with pytest.raises(RuleFileError, match="equal widths"):
        parse_rules(text, "resmlp_widths.toml")


def test_rule_sets_pickle_as_their_source():
    """Worker processes get rule sets by pickling; a width ratio is a sympy class made at load time,
    so a rule set pickles as its text and is parsed again."""
    import pickle
    text = load_rules("mlp").source.replace('width = "n" ', 'width_ratio = "r"\nwidth = "n" ', 1)
    rules = parse_rules(text, "mlp_widths.toml")
    back = pickle.loads(pickle.dumps(rules))
    assert back.source == rules.source and back.path == "mlp_widths.toml"
    assert back.width_ratio is not None and nd.derive("V", back).text() == nd.derive("V", rules).text()
