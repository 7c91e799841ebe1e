"""Fuzzing the activation parser (ntkdiagrams.numerics.activations.parse_activation).

Properties (tests/fuzz_support.py): on any text nothing is executed, and the parser returns an
Activation (an expression in z only) or raises ActivationError with a message."""
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz_support import FUZZ, expression_texts, fuzz_texts, mutated, numbers, outcome
from ntkdiagrams.errors import ActivationError
from ntkdiagrams.numerics.activations import ALLOWED_FUNCTIONS, SHORTCUTS, Activation, parse_activation, z

pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")   # Python warns on some texts before refusing them


def activation_texts():
    shortcut = st.sampled_from(sorted(SHORTCUTS) + ["leaky_relu", "Tanh", "re lu", ""])
    leaky = st.tuples(st.sampled_from(["leaky_relu:", "leaky_relu: ", "leaky_relu", "leaky_relu::", "leaky_relu:-"]),
                      st.one_of(numbers(), expression_texts({"z"}, {"exp", "sqrt"}, max_leaves=3))).map("".join)
    expression = expression_texts({"z", "x"}, set(ALLOWED_FUNCTIONS), max_leaves=6)
    return st.one_of(shortcut, leaky, expression, expression)


@pytest.mark.slow
@FUZZ
@given(st.one_of(fuzz_texts(activation_texts(), atoms=("z", "1")), mutated(activation_texts())))
def test_any_text_parses_or_raises_activation_error(text):
    result = outcome(lambda: parse_activation(text), Activation)
    if isinstance(result, Exception):
        assert isinstance(result, ActivationError), type(result)
    else:
        assert isinstance(result.expr, sp.Expr) and result.expr.free_symbols == {z}
        assert result.name == text.strip()


@pytest.mark.parametrize("value", [None, 1, 1.5, b"tanh", ["tanh"], {"tanh": 1}, ("tanh",)])
def test_non_text_is_an_activation_error(value):
    result = outcome(lambda: parse_activation(value), Activation)
    assert isinstance(result, ActivationError)


def _slopes():
    floats = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)
    return st.one_of(floats.map(repr), st.integers(-50, 50).map(str),
                     st.tuples(st.integers(-99, 99), st.integers(1, 99)).map(lambda t: f"{t[0]}/{t[1]}"),
                     st.tuples(st.integers(-9, 9), st.integers(1, 12), st.integers(1, 9)).map(
                         lambda t: f"{t[0]}*sqrt({t[1]})/{t[2]}"),
                     st.sampled_from(["0.7071067811865476", "1.4142135623730951", "0.333333333333333",
                                      "2.718281828459045", "3.141592653589793", "1e-300", "1e300", "0.1"]))


@pytest.mark.slow
@settings(FUZZ, max_examples=max(1, FUZZ.max_examples // 20))     # sympy.nsimplify is slow: 500 by default
@given(_slopes())
def test_scale_invariant_slopes_are_those_of_sympy_nsimplify(slope):
    """The slopes (a+, a-) are exact numbers, the same sympy.nsimplify gives (the package
    re-implements it so that no formula string is sympified)."""
    from ntkdiagrams.language.expressions import parse_expression
    value = sp.simplify(parse_expression(slope, functions={"sqrt": sp.sqrt}))
    act = outcome(lambda: parse_activation(f"Max(0, z) + ({slope})*Min(0, z)"), Activation)
    if not value.is_real or value == 1:
        return
    assert not isinstance(act, Exception), act
    assert act.scale_invariant == (1, sp.nsimplify(value)), (slope, act.scale_invariant)


@pytest.mark.parametrize("slope", ["0.1", "0.01", "0.2", "1/3", "0.333333333333333", "-2.5e-3", "0.7071067811865476",
                                   "2*sqrt(2)/3", "2.718281828459045", "3.141592653589793", "1e-300", "123456.789"])
def test_scale_invariant_slopes_examples(slope):
    """A few fixed cases of the property above, for the fast subset."""
    from ntkdiagrams.language.expressions import parse_expression
    value = sp.simplify(parse_expression(slope, functions={"sqrt": sp.sqrt}))
    act = outcome(lambda: parse_activation(f"Max(0, z) + ({slope})*Min(0, z)"), Activation)
    assert act.scale_invariant == (1, sp.nsimplify(value))
