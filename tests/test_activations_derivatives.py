"""The written-out derivatives of the shortcuts (ntkdiagrams.numerics.activations.KNOWN_DERIVATIVES)
are exactly what Activation.derivative computed before them, sp.simplify(sp.diff(σ, z, k)): the same
expression tree (== and srepr), so the exponential and elementary forms, the lambdified factors and
every number stay the same.  A new sympy whose simplify returns other forms fails here."""
from __future__ import annotations

import pytest
import sympy as sp

from ntkdiagrams.numerics.activations import KNOWN_DERIVATIVES, SHORTCUTS, known_derivative, parse_activation, z


@pytest.mark.parametrize("text", sorted(KNOWN_DERIVATIVES))
def test_known_derivatives_are_simplify_s(text):
    act = parse_activation(text)
    for k in range(1, 5):
        ref = sp.simplify(sp.diff(act.expr, z, k))
        got = act.derivative(k)
        assert got == ref and sp.srepr(got) == sp.srepr(ref), (text, k, got, ref)


def test_every_shortcut_is_covered():
    assert set(SHORTCUTS.values()) <= set(KNOWN_DERIVATIVES)
    for name in SHORTCUTS:
        assert known_derivative(parse_activation(name).expr, 1) is not None


def test_other_expressions_are_simplified():
    """An expression that is no shortcut, and orders beyond 4, go through sp.simplify."""
    assert known_derivative(z * sp.tanh(z), 1) is None
    assert known_derivative(sp.tanh(z), 5) is None and known_derivative(sp.tanh(z), 0) is None
    act = parse_activation("z*tanh(z)")
    assert act.derivative(1) == sp.simplify(sp.diff(z * sp.tanh(z), z))
    tanh = parse_activation("tanh")
    assert tanh.derivative(5) == sp.simplify(sp.diff(sp.tanh(z), z, 5))
