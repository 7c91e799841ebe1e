"""Shared pieces of the property-based fuzz tests (``tests/test_fuzz_*.py``).

The property every parser must have, on any text:

* nothing is executed: while a parser runs, ``builtins.eval``/``exec`` (but for the import
  system's exec of a module's code), ``sympy.sympify``
  (and the string path of ``sympy.core.sympify.sympify``) and sympy's ``parse_expr`` raise
  ``AssertionError`` if called, which fails the test;
* it either returns a value of the right type or raises one of the project's own errors
  (a subclass of :class:`ntkdiagrams.errors.NtkDiagramsError`) with a non-empty message;
  any other exception (``RecursionError``, ``TypeError``, ``KeyError``, ...) fails the test.

Every input that ever failed is kept in ``tests/fuzz_regressions.json`` and replayed by a plain
parametrized test (``tests/test_fuzz_regressions.py``), so a fixed bug stays fixed without
hypothesis.  Runs are reproducible: ``derandomize=True`` (the examples are a function of the
test's name) and no example database.
"""
from __future__ import annotations

import builtins
import contextlib
import json
import os
import sys
from pathlib import Path

import sympy
import sympy.parsing
import sympy.parsing.sympy_parser
from hypothesis import HealthCheck, settings

from ntkdiagrams.errors import NtkDiagramsError

#: examples per fuzz test: at least 10,000 per parser in CI; NTKDIAGRAMS_FUZZ_EXAMPLES changes it
#: for a quick local run (a test helper's variable: the package never reads it)
EXAMPLES = int(os.environ.get("NTKDIAGRAMS_FUZZ_EXAMPLES", "10000"))

#: settings of every fuzz test: many examples, no deadline (the first examples import and warm
#: up sympy), reproducible (derandomize, no database)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
#: the second property of a parser (valid inputs give the right value): a fifth of the examples,
#: on top of the 10,000 of its any-text test
FUZZ_VALID = settings(FUZZ, max_examples=max(1, EXAMPLES // 5))

REGRESSIONS = Path(__file__).with_name("fuzz_regressions.json")
PYTHON_RECURSION_LIMIT = 1000


def _refuse(name):
    def refused(*args, **kwargs):
        raise AssertionError(f"{name} was called while parsing untrusted text")
    return refused


def _refuse_unless_import(name, real):
    """eval/exec refused, except the import system's exec of a module's code object (sympy
    imports some of its modules lazily, on first use)."""
    def guarded(source, *args, **kwargs):
        caller = sys._getframe(1).f_code.co_filename
        if not isinstance(source, (str, bytes)) and caller.startswith("<frozen importlib"):
            return real(source, *args, **kwargs)
        raise AssertionError(f"{name} was called while parsing untrusted text")
    return guarded


@contextlib.contextmanager
def nothing_executed():
    """Within the block, any use of eval/exec/sympify/parse_expr fails with AssertionError."""
    core = sys.modules["sympy.core.sympify"]   # the module (sympy.core.sympify is the function)
    real_sympify = core.sympify

    def sympify_guard(a, *args, **kwargs):
        # sympy calls sympify internally on its own objects (sp.Integer(2) + 1); only the
        # string path, which ends in parse_expr and eval, is refused
        if isinstance(a, str):
            raise AssertionError(f"sympify({a!r}) was called while parsing untrusted text")
        return real_sympify(a, *args, **kwargs)

    patches = [(builtins, "eval", _refuse_unless_import("eval", builtins.eval)),
               (builtins, "exec", _refuse_unless_import("exec", builtins.exec)),
               (sympy, "sympify", _refuse("sympy.sympify")),
               (core, "sympify", sympify_guard),
               (sympy.parsing.sympy_parser, "parse_expr", _refuse("parse_expr")),
               (sympy.parsing, "parse_expr", _refuse("parse_expr"))]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


def outcome(call, expected_type):
    """Run ``call()`` under :func:`nothing_executed`; return its value (checked to be an instance
    of ``expected_type``) or the project error it raised (checked to have a message).  Any other
    exception propagates and fails the test."""
    limit = sys.getrecursionlimit()
    # Python's default: hypothesis raises the limit while it runs a test, and with it the depth
    # at which Python's own parser gives up (RecursionError) on deeply nested text
    sys.setrecursionlimit(PYTHON_RECURSION_LIMIT)
    try:
        with nothing_executed():
            try:
                value = call()
            except NtkDiagramsError as exc:
                assert str(exc).strip(), f"{type(exc).__name__} without a message"
                return exc
    finally:
        sys.setrecursionlimit(limit)
    assert isinstance(value, expected_type), f"returned {type(value).__name__}, expected {expected_type}"
    return value


def regressions() -> list:
    """The recorded failing inputs: (parser, input, what it used to do).  An entry gives its input
    as ``input`` (any JSON value: the parsers must also refuse non-text) or, for long texts, as
    ``parts``: [[text, repeat], ...] joined."""
    out = []
    for e in json.loads(REGRESSIONS.read_text(encoding="utf-8")):
        value = e["input"] if "input" in e else "".join(text * count for text, count in e["parts"])
        out.append((e["parser"], value, e["was"]))
    return out


# ---------------------------------------------------------------------------------------------
# strategies shared by the fuzz tests
# ---------------------------------------------------------------------------------------------

from hypothesis import strategies as st  # noqa: E402  (kept beside the strategies that use it)

#: binary operators: the allowed ones (weighted up) and every other Python operator
BINARY = ["+", "-", "*", "/", "**"] * 4 + ["//", "%", "@", "<<", ">>", "&", "|", "^", "<", "==", "!=",
                                           ">=", "and", "or", "in", "is", "not in", ":="]
UNARY = ["-", "+"] * 4 + ["~", "not ", "await ", "*", "**", "lambda: "]
#: literals and names the parsers must refuse or treat with care
ODD_LEAVES = ["True", "None", "...", "'z'", "b'z'", "f'{z}'", "1j", "0x1f", "1_000", "0o7", "1e999",
              "-1e999", "1e-400", "nan", "inf", "_z", "__import__", "__builtins__", "open", "eval",
              "exec", "sympify", "lambda", "[]", "{}", "()", "[z]", "{z: 1}", "(z,)", "z[0]", "z.real",
              "z.__class__", "9" * 400, "2**64", "2**65", "0.1e2", "1e15", "1e16", "  z  ", "\tz\n", "z\x00",
              "ℓ", "ｚ", "z̄"]
#: postfix forms that no parser accepts
POSTFIX = [".real", ".__class__", "[0]", "[:]", "()", "(z=1)", "(*z)", "(**z)", " for z in z", " if z else z"]


_HEAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"


def identifiers():
    """Python identifiers (ASCII), cheaper to draw than st.from_regex."""
    return st.tuples(st.sampled_from(_HEAD), st.text(alphabet=_HEAD + "0123456789", max_size=7)).map("".join)


def numbers():
    return st.one_of(st.integers(-10 ** 6, 10 ** 6).map(str), st.integers(0, 70).map(str),
                     st.floats(allow_nan=False, allow_infinity=False).map(repr),
                     st.from_regex(r"[0-9]{1,4}(\.[0-9]{0,3})?(e[-+]?[0-9]{1,3})?", fullmatch=True))


def expression_texts(names, functions, max_leaves=10):
    """Text in (a superset of) Python's expression grammar: two thirds from the constructs the
    restricted parser allows (numbers, the given names and functions, + - * / **, calls), so
    that they get deep into the caller's builders, one third mixed with forbidden ones (other
    operators, attributes, subscripts, keywords, lambdas, strings, unknown names, ...)."""
    names, functions = sorted(names), sorted(functions)
    space = st.sampled_from(["", " ", "  ", "\t"])

    def grammar(leaf, fname, binary, unary, extra):
        def extend(inner):
            return st.one_of(
                st.tuples(inner, space, st.sampled_from(binary), space, inner).map("".join),
                st.tuples(st.sampled_from(unary), inner).map("".join),
                inner.map(lambda s: f"({s})"),
                st.tuples(fname, st.lists(inner, min_size=1, max_size=3)).map(
                    lambda t: f"{t[0]}({', '.join(t[1])})"),
                *extra(inner))
        return st.recursive(leaf, extend, max_leaves=max_leaves)

    allowed = grammar(st.one_of(st.integers(0, 12).map(str), st.sampled_from(["0.5", "2.5", "1e-3", "3.0"]),
                                st.sampled_from(names), st.sampled_from(names)),
                      st.sampled_from(functions), ["+", "-", "*", "/", "**"], ["-", "+"], lambda inner: [])
    anything = grammar(
        st.one_of(numbers(), st.sampled_from(names), st.sampled_from(ODD_LEAVES), identifiers()),
        st.one_of(st.sampled_from(functions), st.sampled_from(["__import__", "getattr", "eval", "unknown", "_f"]),
                  identifiers()),
        BINARY, UNARY,
        lambda inner: [st.tuples(inner, st.sampled_from(POSTFIX)).map("".join),
                       st.tuples(inner, inner).map(lambda t: f"{t[0]} if {t[1]} else {t[0]}"),
                       st.tuples(st.sampled_from(functions), inner).map(lambda t: f"{t[0]}(x={t[1]})")])
    return st.one_of(allowed, allowed, anything)


_EDIT = st.tuples(st.integers(0, 10 ** 4), st.sampled_from(["insert", "delete", "replace"]),
                  st.one_of(st.sampled_from(list("()[]{},;:.*/+-_'\"\\#=<>!@$%^&|~` \t\n0123456789zZ")),
                            st.characters()))
_EDITS = st.lists(_EDIT, min_size=1, max_size=3)


def _edit(text, edits):
    for at, op, char in edits:
        pos = at % (len(text) + 1)
        if op == "insert":
            text = text[:pos] + char + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + 1:]
        else:
            text = text[:pos] + char + text[pos + 1:]
    return text


def mutated(strategy):
    """Texts of ``strategy`` with a few characters inserted, deleted or replaced."""
    return st.tuples(strategy, _EDITS).map(lambda t: _edit(*t))


def deep_texts(atoms=("1", "z")):
    """Texts at and beyond the parsers' caps: nesting depth, length (4000 characters) and
    operator chains long enough to exhaust Python's own parser."""
    n = st.one_of(st.integers(0, 80), st.integers(0, 5000), st.integers(1900, 4100),
                  st.sampled_from([59, 60, 61, 62, 199, 200, 201, 1000, 1333, 1999, 2000, 2999, 3000, 3998, 3999, 4000]))
    atom = st.sampled_from(list(atoms))
    return st.one_of(
        st.tuples(st.sampled_from(["-", "+", "~", "not ", "-+"]), n, atom).map(lambda t: t[0] * t[1] + t[2]),
        st.tuples(n, atom).map(lambda t: "(" * t[0] + t[1] + ")" * t[0]),
        st.tuples(st.sampled_from(["+", "*", "**", "-", "/"]), n, atom).map(lambda t: t[0].join([t[2]] * (t[1] + 1))),
        st.tuples(st.sampled_from(["f(", "tanh(", "sin("]), n, atom).map(lambda t: t[0] * t[1] + t[2] + ")" * t[1]),
        st.tuples(n, atom).map(lambda t: "(" * t[0] + t[1]),
    )


def fuzz_texts(grammar, atoms=("1", "z")):
    """The mix every fuzz test draws from: grammar-aware texts, their mutations, texts at the
    caps, and arbitrary unicode text."""
    return st.one_of(grammar, grammar, mutated(grammar), deep_texts(atoms), st.text(max_size=40),
                     st.text(alphabet=st.sampled_from(list("z()+-*/ 0123456789.,e_")), max_size=40))


# ---------------------------------------------------------------------------------------------
# the parsers under test, as the fuzz tests and the regression replay call them
# ---------------------------------------------------------------------------------------------

def expression_context():
    """The names and functions the expression-parser fuzz declares (real symbols, like every
    symbol the package parses into)."""
    import sympy as sp
    z, x, n = sp.Symbol("z", real=True), sp.Symbol("x", real=True), sp.Symbol("n", positive=True)
    return ({"z": z, "x": x, "n": n},
            {"tanh": sp.tanh, "exp": sp.exp, "sqrt": sp.sqrt, "Max": sp.Max, "f": sp.Function("f")})


def parsers():
    """parser name -> (a function of the text, the type of a valid result, the error it may raise)."""
    import sympy as sp
    from ntkdiagrams.engine.request import Request, parse_request
    from ntkdiagrams.errors import ActivationError, ExpressionError, RuleFileError
    from ntkdiagrams.language.expressions import parse_expression
    from ntkdiagrams.language.rulefile import RuleSet, load_rules, parse_rules
    from ntkdiagrams.numerics.activations import Activation, parse_activation

    names, functions = expression_context()
    rules = load_rules("mlp")
    return {
        "expression": (lambda t: parse_expression(t, names=names, functions=functions, where="fuzz"),
                       sp.Basic, ExpressionError),
        "request": (lambda t: parse_request(t, rules), Request, ExpressionError),
        "activation": (parse_activation, Activation, ActivationError),
        "rules": (lambda t: parse_rules(t, "fuzz.toml"), RuleSet, RuleFileError),
    }


def expression_pool(names, functions, count=400, seed=0):
    """``count`` expression texts from the grammar of :func:`expression_texts`, made once with a
    seeded ``random.Random`` (a list to draw from is much cheaper for hypothesis than a recursive
    strategy: the rule-file fuzz draws its expression values from here)."""
    import random

    rng = random.Random(seed)
    names, functions = sorted(names), sorted(functions)

    def leaf(valid):
        if valid or rng.random() < 0.7:
            return rng.choice(names + [str(rng.randint(0, 12)), "0.5", "2.5"])
        return rng.choice(ODD_LEAVES + ["unknown", "_x", "-1e999"])

    def expr(depth, valid):
        if depth == 0 or rng.random() < 0.3:
            return leaf(valid)
        kind = rng.random()
        if kind < 0.45:
            op = rng.choice(["+", "-", "*", "/", "**"] if valid or rng.random() < 0.7 else BINARY)
            return f"{expr(depth - 1, valid)} {op} {expr(depth - 1, valid)}"
        if kind < 0.55:
            return f"-{expr(depth - 1, valid)}"
        if kind < 0.65:
            return f"({expr(depth - 1, valid)})"
        name = rng.choice(functions) if valid or rng.random() < 0.7 else rng.choice(["__import__", "eval", "g"])
        args = ", ".join(expr(depth - 1, valid) for _ in range(rng.choice([1, 1, 2, 2, 3])))
        text = f"{name}({args})"
        return text if valid or rng.random() < 0.8 else text + rng.choice(POSTFIX)

    return [expr(rng.randint(1, 4), valid=rng.random() < 0.7) for _ in range(count)]
