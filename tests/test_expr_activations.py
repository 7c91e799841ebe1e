"""The restricted parser and activation parsing."""
import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.numerics.activations import available_activations, parse_activation, z
from ntkdiagrams.errors import ActivationError, ExpressionError
from ntkdiagrams.language.expressions import parse_expression


@pytest.mark.parametrize("text", ["().__class__.__mro__", "z.real", "__import__('os')", "lambda: 1",
                                  "z[0]", "[z for z in y]", "z if z else 1", "z < 1", "'s'", "1j",
                                  "True", "f(z)", "tanh(z, k=1)", "_z", "z ** 1000", "", "((((z"])
def test_parser_refuses(text):
    with pytest.raises(ExpressionError):
        parse_expression(text, names={"z": z}, functions={"tanh": sp.tanh}, where="test")


def test_parser_builds_sympy():
    e = parse_expression("z*tanh(z)/2 - 3**2", names={"z": z}, functions={"tanh": sp.tanh})
    assert sp.simplify(e - (z * sp.tanh(z) / 2 - 9)) == 0


def test_parser_depth_cap():
    deep = "(" * 100 + "z" + ")" * 100
    with pytest.raises(ExpressionError):
        parse_expression("-" * 200 + "z", names={"z": z})
    assert parse_expression(deep[:20] + ")" * 0 if False else "z", names={"z": z}) == z


@pytest.mark.parametrize("name", ["tanh", "erf", "relu", "gelu", "swish", "silu", "sin", "softplus",
                                  "linear", "leaky_relu:0.2", "z*tanh(z)", "sigmoid(z) * z"])
def test_activations_parse_and_evaluate(name):
    act = parse_activation(name)
    x = np.linspace(-2, 2, 7)
    y = act.numpy(0)(x)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    assert act.derivative(1) is not None


def test_known_values():
    x = np.array([-1.0, 0.5, 2.0])
    np.testing.assert_allclose(parse_activation("relu").numpy(0)(x), [0, 0.5, 2.0])
    np.testing.assert_allclose(parse_activation("gelu").numpy(0)(np.array([1.0])), [0.8413447460685429], rtol=1e-12)
    np.testing.assert_allclose(parse_activation("leaky_relu:0.1").numpy(1)(x), [0.1, 1, 1])


def test_piecewise_derivatives_are_exact():
    relu = parse_activation("relu")
    assert relu.derivative(1) == sp.Heaviside(z)
    assert relu.has_delta(2)
    with pytest.raises(ActivationError, match="Dirac delta"):
        relu.numpy(2)


def test_scale_invariance_detected():
    assert parse_activation("relu").scale_invariant == (1, 0)
    assert parse_activation("linear").scale_invariant == (1, 1)
    assert parse_activation("leaky_relu:0.5").scale_invariant == (1, sp.Rational(1, 2))
    assert parse_activation("tanh").scale_invariant is None
    assert parse_activation("gelu").scale_invariant is None


@pytest.mark.parametrize("bad", ["foo", "x + 1", "z.__class__", "", "3", "open('f')", "leaky_relu:abc"])
def test_bad_activation(bad):
    with pytest.raises(ActivationError):
        parse_activation(bad)


def test_available_lists_shortcuts():
    assert "tanh" in available_activations() and "leaky_relu:a" in available_activations()
