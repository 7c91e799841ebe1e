"""Fuzzing the restricted expression parser (ntkdiagrams.language.expressions.parse_expression).

Properties (tests/fuzz_support.py): on any text nothing is executed, and the parser returns a
sympy object or raises ExpressionError with a message; on expressions built from the allowed
grammar it returns exactly the expression sympy builds from the same operations."""
import operator

import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from fuzz_support import FUZZ, FUZZ_VALID, expression_context, expression_texts, fuzz_texts, outcome
from ntkdiagrams.errors import ExpressionError
from ntkdiagrams.language.expressions import parse_expression

pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")   # Python warns on some texts before refusing them

NAMES, FUNCTIONS = expression_context()
z, x, n = NAMES["z"], NAMES["x"], NAMES["n"]
f = FUNCTIONS["f"]
OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def parse(text):
    return parse_expression(text, names=NAMES, functions=FUNCTIONS, where="fuzz")


@pytest.mark.slow
@FUZZ
@given(fuzz_texts(expression_texts(NAMES, FUNCTIONS), atoms=("1", "z", "x", "2.5")))
def test_any_text_parses_or_raises_expression_error(text):
    result = outcome(lambda: parse(text), sp.Basic)
    if isinstance(result, Exception):
        assert isinstance(result, ExpressionError), type(result)
        assert "fuzz" in str(result)      # the message says where the text came from


def _valued():
    """(text, the sympy value of the same operations) for expressions of the allowed grammar."""
    leaf = st.one_of(st.integers(0, 30).map(lambda i: (str(i), sp.Integer(i))),
                     st.sampled_from(sorted(NAMES.items())))

    def extend(inner):
        return st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(
                lambda t: (f"({t[0][0]}) {t[1]} ({t[2][0]})",
                           OPS[t[1]](
                               t[0][1], t[2][1]))),
            st.tuples(inner, st.integers(-3, 3)).map(lambda t: (f"({t[0][0]})**({t[1]})", t[0][1] ** t[1])),
            inner.map(lambda t: (f"-({t[0]})", -t[1])),
            st.tuples(st.sampled_from(["tanh", "exp", "f"]), inner).map(
                lambda t: (f"{t[0]}({t[1][0]})", FUNCTIONS[t[0]](t[1][1]))),
            st.tuples(inner, inner).map(lambda t: (f"f({t[0][0]}, {t[1][0]})", f(t[0][1], t[1][1]))),
        )
    return st.recursive(leaf, extend, max_leaves=8)


@pytest.mark.slow
@FUZZ_VALID
@given(_valued())
def test_valid_expressions_build_the_same_sympy_value(pair):
    text, value = pair
    result = outcome(lambda: parse(text), sp.Basic)
    assert not isinstance(result, Exception), f"{text!r} refused: {result}"
    assert result == value, (text, result, value)
