"""The engine against the textbook: docs/conventions.md §4 oracles, deep linear networks, counts."""
import itertools

import pytest
import sympy as sp

from ntkdiagrams.numerics.activations import z as zsym
from ntkdiagrams.language.algebra import GaussianExpectation, Z, ell, gexp, sigma, tensor_class
from ntkdiagrams.numerics.closedforms import substitute_activation
from ntkdiagrams.engine.derivation import derive, isolating_pattern
from ntkdiagrams.language.rulefile import Leg, load_rules
from ntkdiagrams.engine.wick import connected_groupings, wick_contractions

C_b, C_W = sp.symbols("C_b C_W", real=True)
a1, a2, a3, a4 = sp.symbols("alpha_1:5")
RULES = load_rules("mlp")
K = RULES.tensors["K"].cls
G1 = RULES.tensors["G1"].cls
V = RULES.tensors["V"].cls


def E(f):
    return gexp(f, ell)


def d(f, *betas):
    for b in betas:
        f = sp.diff(f, Z(b))
    return f


def s(a):
    return sigma(Z(a))


# ---- oracles: docs/conventions.md §4, typed by hand, with Σ_β over the inputs each factor touches ----

def oracle_K():
    return C_b + C_W * E(s(a1) * s(a2))


def oracle_G1():
    f = s(a1) * s(a2)
    labs = (a1, a2)
    out = sp.Rational(1, 2) * sum(G1(ell, b1, b2) * E(d(f, b1, b2)) for b1, b2 in itertools.product(labs, repeat=2))
    out += sp.Rational(1, 8) * sum(V(ell, *bs) * E(d(f, *bs)) for bs in itertools.product(labs, repeat=4))
    return C_W * out


def oracle_V():
    f12, f34 = s(a1) * s(a2), s(a3) * s(a4)
    out = E(s(a1) * s(a2) * s(a3) * s(a4)) - E(f12) * E(f34)
    out += sp.Rational(1, 4) * sum(V(ell, b1, b2, b3, b4) * E(d(f12, b1, b2)) * E(d(f34, b3, b4))
                                   for b1, b2 in itertools.product((a1, a2), repeat=2)
                                   for b3, b4 in itertools.product((a3, a4), repeat=2))
    return C_W ** 2 * out


@pytest.mark.parametrize("name, oracle", [("K", oracle_K), ("G1", oracle_G1), ("V", oracle_V)])
def test_engine_equals_textbook_recursion(name, oracle):
    rec = derive(name)
    assert sp.expand(rec.rhs - oracle()) == 0


@pytest.mark.parametrize("name, oracle", [("K", oracle_K), ("G1", oracle_G1), ("V", oracle_V)])
@pytest.mark.parametrize("merge", [{a2: a1}, {a3: a1, a4: a2}, {a2: a1, a3: a1, a4: a1}])
def test_engine_equals_oracle_for_coinciding_inputs(name, oracle, merge):
    """The explicit-label form stays right when inputs coincide (diagonal components)."""
    rec = derive(name)
    assert sp.expand(rec.rhs.xreplace(merge) - oracle().xreplace(merge)) == 0


def test_oracle_check_can_fail():
    """A factor-of-two error in the V recursion is caught by the same comparison."""
    wrong = derive("V").rhs + C_W ** 2 * E(s(a1) * s(a2)) * E(s(a3) * s(a4))
    assert sp.expand(wrong - oracle_V()) != 0


def test_first_layer_values():
    k1 = derive("K").initial
    assert k1.has(C_b) and k1.has(C_W)
    from ntkdiagrams.language.algebra import InputGram
    assert sp.expand(k1 - (C_b + C_W * InputGram(a1, a2))) == 0
    assert derive("G1").initial == 0
    assert derive("V").initial == 0


def test_v_symmetries_are_derived():
    assert V(ell, a2, a1, a3, a4) == V(ell, a1, a2, a3, a4)
    assert V(ell, a3, a4, a1, a2) == V(ell, a1, a2, a3, a4)
    assert V(ell, a1, a3, a2, a4) != V(ell, a1, a2, a3, a4)


def test_isolating_pattern_matches_physics_md():
    st = RULES.statistics["V"]
    first = st.terms[0]
    pat = isolating_pattern(st, first)
    assert [int(pat[i]) for i in st.neuron_indices] == [0, 0, 1, 1]


# ---- deep linear networks: closed forms (PDLT §3) ----

def linear(expr):
    return substitute_activation(expr, zsym, K)


def test_deep_linear_recursions_in_closed_form():
    assert sp.expand(linear(derive("K").rhs) - (C_b + C_W * K(ell, a1, a2))) == 0
    assert sp.expand(linear(derive("G1").rhs) - C_W * G1(ell, a1, a2)) == 0
    expected_v = C_W ** 2 * (K(ell, a1, a3) * K(ell, a2, a4) + K(ell, a1, a4) * K(ell, a2, a3) + V(ell, a1, a2, a3, a4))
    assert sp.expand(linear(derive("V").rhs) - expected_v) == 0


def test_deep_linear_v_grows_linearly_with_depth():
    """Iterating the derived recursion: V^(l) = (l-1) C_W^{2(l-1)} (K13 K24 + K14 K23) at C_b = 0."""
    k1 = sp.Function("k1")  # symbolic first-layer kernel entries
    Kl = {(p, q): k1(*sorted((p, q), key=str)) for p in (a1, a2, a3, a4) for q in (a1, a2, a3, a4)}
    v_rhs = linear(derive("V").rhs).subs(C_b, 0)
    vl = sp.Integer(0)  # V^(1) = 0
    for layer in range(1, 5):
        # K^(layer) = C_W^(layer-1) K^(1) at C_b = 0
        reps = {K(ell, p, q): C_W ** (layer - 1) * Kl[(p, q)] for p, q in Kl}
        reps[V(ell, a1, a2, a3, a4)] = vl
        vl = sp.expand(v_rhs.xreplace(reps))
        expected = layer * C_W ** (2 * layer) * (Kl[(a1, a3)] * Kl[(a2, a4)] + Kl[(a1, a4)] * Kl[(a2, a3)])
        assert sp.expand(vl - expected) == 0, layer


def test_relu_criticality_single_input_symbolic():
    """ReLU, C_b=0, C_W=2, one input: V^(l+1) = V^(l) + 5 K², hence V^(l) = 5 (l-1) K² (docs/conventions.md §5).

    With σ = max(0,z) on one input: <σ⁴> = 3K²/2, <σ²> = K/2, <σ'σ'> = 1/2 and
    <σ σ''> = <z H(z) δ(z)> = 0, so V^(l+1) = 4 (3/2 - 1/4) K² + 4 · ¼ · V^(l) · 1 · 1."""
    rec = derive("V").rhs.xreplace({a2: a1, a3: a1, a4: a1}).subs({C_W: 2})
    k, v = sp.symbols("k v", positive=True)
    values = {
        GaussianExpectation(sigma(Z(a1)) ** 4, ell): sp.Rational(3, 2) * k ** 2,
        GaussianExpectation(sigma(Z(a1)) ** 2, ell): k / 2,
        GaussianExpectation(sigma(Z(a1), 1) ** 2, ell): sp.Rational(1, 2),
        GaussianExpectation(sigma(Z(a1)) * sigma(Z(a1), 2), ell): 0,
    }
    out = rec.xreplace(values).xreplace({V(ell, a1, a1, a1, a1): v})
    assert not out.has(GaussianExpectation)
    assert sp.expand(out - (5 * k ** 2 + v)) == 0


# ---- diagram generation: counts known by hand ----

def legs(k):
    i = sp.symbols(f"i1:{k + 1}")
    a = sp.symbols(f"alpha_1:{k + 1}")
    return tuple(Leg("z", (i[q],), (a[q],)) for q in range(k))


@pytest.mark.parametrize("k, count", [(2, 2), (4, 12), (6, 120)])
def test_number_of_wick_contractions(k, count):
    """Σ_{even m} C(k, m) (m-1)!! (k-m-1)!!: biases pair with biases, weights with weights."""
    assert len(wick_contractions(legs(k), RULES)) == count


def test_connected_contractions_of_four_point_function():
    """Only the three all-weight pairings connect the four legs, each with one grouping."""
    conn = [(c, g) for c in wick_contractions(legs(4), RULES) for g in connected_groupings(c, 4)]
    assert len(conn) == 3
    assert all(len(g) == 1 and len(g[0]) == 2 for _c, g in conn)


def test_diagrams_of_v():
    rec = derive("V")
    table = rec.diagram_table()
    lines = table.splitlines()
    assert len(lines) == 2
    assert any("x6" in ln and "2 neuron sites" in ln and "blob V" in ln for ln in lines)
    assert any("x1" in ln and "1 neuron site" in ln for ln in lines)
    assert all("[n^-1]" in ln for ln in lines)
    for dgm in rec.diagrams:
        assert dgm.graph.number_of_nodes() > 0


def test_diagrams_of_g1_and_k():
    assert len(derive("K").diagram_table().splitlines()) == 2
    g1 = derive("G1").diagram_table()
    assert "blob G1" in g1 and "blob V" in g1 and "x3" in g1


@pytest.mark.parametrize("name", ["K", "G1", "V"])
def test_compact_form_expands_to_explicit(name):
    from ntkdiagrams.language.algebra import expand_blobs
    rec = derive(name)
    assert sp.expand(expand_blobs(rec.compact) - rec.rhs) == 0


def test_compact_forms_are_physics_md_section_4():
    """Three terms for V (1, -1, 1/4 of C_W²), two for G1 (1/2 and 1/8 of C_W): the weights are
    generated by the enumeration and the dummy relabelling merges the blob placements."""
    from ntkdiagrams.language.algebra import BlobSum
    v = derive("V").compact
    assert sorted(float(t.as_coeff_Mul()[0]) for t in sp.Add.make_args(v)) == [-1.0, 0.25, 1.0]
    g1 = derive("G1").compact
    assert sorted(float(t.as_coeff_Mul()[0]) for t in sp.Add.make_args(g1)) == [0.125, 0.5]
    assert all(t.has(BlobSum) for t in sp.Add.make_args(g1))


@pytest.mark.parametrize("name", ["K", "G1", "V"])
@pytest.mark.parametrize("compact", [True, False])
def test_latex_is_well_formed(name, compact):
    tex = derive(name).latex(compact=compact)
    assert tex.count("{") == tex.count("}")
    assert tex.count("\\left") == tex.count("\\right")
    for leak in ("sigma[", "Sum[", "beta_1", "alpha_1", "Function", ">_K", "**"):
        assert leak not in tex, leak
