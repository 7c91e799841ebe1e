"""Diagrams carry the computation: Σ multiplicity × value over the diagrams of a recursion is its
right-hand side, exactly (explicit and compact), for every tensor of the rule file and for the
coefficients of correlator requests; merged diagrams have equal values."""
import networkx as nx
import pytest
import sympy as sp

import ntkdiagrams as nd
from ntkdiagrams.cli import main
from ntkdiagrams.engine.diagrams import merge_isomorphic
from ntkdiagrams.errors import UnsupportedError
from ntkdiagrams.language.algebra import Z, ell, gexp, sigma

TENSORS = ["K", "G1", "V", "Theta", "Theta1", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U"]
REQUESTS = [  # those of tests/test_request.py
    ("Ec[z(i3;a3) z(i1;a1) z(i4;a4) z(i2;a2)]", None),
    ("E[dH(i0,i1,i2;a0,a1,a2) z(i3;a3)]", None),
    ("E[z(i1;a1) z(i2;a2)]", 1),
    ("E[z(i1;a1) z(i2;a2) z(i3;a3) z(i4;a4)]", 1),
    ("E[H(i1,i2;a1,a2) z(i3;a3) z(i4;a4)]", 1),
    ("Ec[z(i;a1) z(i;a2) z(i;a3) z(i;a4)]", None),
    ("Ec[z(i;a1) z(i;a2) z(i;b) z(i;b)]", None),
]


def _check_sums(rec):
    assert rec.diagrams, f"{rec.tensor}: no diagrams"
    explicit = sp.Add(*[d.multiplicity * d.value for d in rec.diagrams])
    compact = sp.Add(*[d.multiplicity * d.compact for d in rec.diagrams])
    assert sp.expand(explicit - rec.rhs) == 0
    assert sp.expand(compact - rec.compact) == 0
    assert all(d.power == -rec.order for d in rec.diagrams)
    # merged only where the values agree: merging the merged diagrams again changes nothing
    assert len(merge_isomorphic([d.copy() for d in rec.diagrams], labeled=True)) == len(rec.diagrams)


@pytest.mark.parametrize("name", TENSORS)
def test_diagrams_add_up_to_the_recursion(name):
    rec = nd.derive(name)
    _check_sums(rec)
    assert all(nx.is_connected(d.graph) for d in rec.diagrams)  # a cumulant: connected diagrams only


@pytest.mark.slow
@pytest.mark.parametrize("text, order", REQUESTS)
def test_request_diagrams_add_up_to_each_coefficient(text, order):
    res = nd.derive_request(text, order=order)
    assert res.structures
    for s in res.structures:
        _check_sums(s.recursion)


def test_one_site_diagram_of_v_is_the_gaussian_connected_four_point_function():
    """V's one-site diagram: C_W² (⟨σσσσ⟩_K − ⟨σσ⟩_K ⟨σσ⟩_K), the joint cumulant of the two
    insertions σ_{α1}σ_{α2} and σ_{α3}σ_{α4} on one neuron (docs/conventions.md §4)."""
    rec = nd.derive("V")
    C_W = sp.Symbol("C_W", real=True)
    a1, a2, a3, a4 = rec.labels
    s = [sigma(Z(a)) for a in (a1, a2, a3, a4)]
    oracle = C_W**2 * (gexp(s[0] * s[1] * s[2] * s[3], ell) - gexp(s[0] * s[1], ell) * gexp(s[2] * s[3], ell))
    one_site = [d for d in rec.diagrams if sum(1 for _, k in d.graph.nodes(data="kind") if k == "site") == 1]
    assert len(one_site) == 1 and one_site[0].multiplicity == 1
    assert sp.expand(one_site[0].value - oracle) == 0
    two_sites = [d for d in rec.diagrams if d is not one_site[0]]
    assert [d.multiplicity for d in two_sites] == [6]
    assert all(any(k == "blob" for _, k in d.graph.nodes(data="kind")) for d in two_sites)


def test_insertions_carry_their_function():
    """σσ and σ'σ' insertions are different nodes: the NTK's two weight-propagator pieces."""
    rec = nd.derive("Theta")
    functions = {f for d in rec.diagrams for _, f in d.graph.nodes(data="function") if f}
    assert functions == {"σσ", "σ'σ'"}


def test_tables_and_latex_with_values():
    rec = nd.derive("V")
    table = rec.diagram_table(values=True).splitlines()
    assert len(table) == len(rec.diagrams)
    one = next(ln for ln in table if "1 neuron site" in ln)
    assert one.endswith("=  C_W**2 * <sigma[alpha_1]*sigma[alpha_2]*sigma[alpha_3]*sigma[alpha_4]>_K(ell)"
                        " - C_W**2 * <sigma[alpha_1]*sigma[alpha_2]>_K(ell)*<sigma[alpha_3]*sigma[alpha_4]>_K(ell)")
    assert "x6  [n^-1]  2 weight propagators; 2 neuron sites; blob V  =  C_W**2/24 * Sum[beta_1,beta_2,beta_3,beta_4]" \
        in "\n".join(table)
    tex = rec.diagram_latex().splitlines()
    assert len(tex) == 2 and tex[0].startswith("D_{1} &= ") and tex[0].endswith(r"\\")
    assert any(r"(\times 6,\ n^{-1})" in ln for ln in tex)
    assert sp.expand(rec.diagram_sum() - rec.rhs) == 0


def test_cli_diagrams(capsys):
    assert main(["derive", "V", "--diagrams"]) == 0
    out = capsys.readouterr().out
    assert "diagrams of V (multiplicity, power of n, value):" in out and "x6  [n^-1]" in out
    assert main(["derive", "V", "--latex", "--diagrams"]) == 0
    out = capsys.readouterr().out
    assert out.count(r"\begin{align}") == 2 and "D_{2} &= " in out


def test_derive_refuses_requests():
    with pytest.raises(UnsupportedError, match="derive_request"):
        nd.derive("E[z(i1;a1) z(i2;a2)]")
