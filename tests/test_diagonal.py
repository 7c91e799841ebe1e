"""Single-input closed forms and the scale-invariant theorem, proven symbolically by the engine."""
import pytest
import sympy as sp

from ntkdiagrams.numerics.activations import parse_activation
from ntkdiagrams.cli import main
from ntkdiagrams.analysis.diagonal import Kd, diagonal_recursion, vanishes_on_diagonal
from ntkdiagrams.errors import UnsupportedError

C_W, lam_W = sp.Symbol("C_W", real=True), sp.Symbol("lambda_W", real=True)


@pytest.mark.parametrize("act, factor", [("relu", sp.Rational(1, 2)), ("leaky_relu:0.2", sp.Rational(13, 25)),
                                         ("linear", 1)])
def test_theta1_vanishes_on_the_diagonal_by_induction(act, factor):
    proof = vanishes_on_diagonal("Theta1", parse_activation(act))
    assert proof.vanishes, proof.text()
    assert set(proof.recursions) == {"Theta1", "G1"}
    th = proof.recursions["Theta1"]
    t1, g1 = sp.Symbol("Theta1_aa"), sp.Symbol("G1_aa")
    assert sp.simplify(th.rhs - factor * (C_W * t1 + lam_W * g1)) == 0


def test_relu_v_diagonal_is_the_criticality_fact():
    r = diagonal_recursion("V", parse_activation("relu"))
    v = sp.Symbol("V_aa")
    assert sp.simplify(r.rhs.subs(C_W, 2) - (5 * Kd ** 2 + v)) == 0


def test_things_that_do_not_vanish_are_not_claimed():
    relu = parse_activation("relu")
    assert not vanishes_on_diagonal("Theta", relu).vanishes      # Θ^(1) ≠ 0
    assert not vanishes_on_diagonal("V", relu).vanishes          # sourced by 5K²


def test_non_scale_invariant_is_refused():
    with pytest.raises(UnsupportedError, match="scale-invariant"):
        vanishes_on_diagonal("Theta1", parse_activation("tanh"))


def test_cli_prints_zero(capsys):
    assert main(["derive", "Theta1", "--activation", "relu", "--diagonal"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "Theta1_aa = 0"
    assert main(["derive", "Theta1", "--diagonal"]) == 2
