"""A restricted expression parser: rule files and user expressions never reach ``eval``.

Text is parsed with :func:`ast.parse` in ``eval`` mode and walked node by node against a
whitelist:

* numbers (int, float; no complex, no bool), converted to exact sympy numbers when integral;
* names declared by the caller (identifiers, never starting with ``_``);
* ``+ - * / **`` and unary ``+ -``;
* calls of functions declared by the caller, with positional arguments only.

Attributes, subscripts, lambdas, comprehensions, keywords, strings, comparisons and
everything else are refused with an :class:`~ntkdiagrams.errors.ExpressionError` that quotes
the offending fragment.  Length, nesting depth and exponents are capped, so a hostile file
cannot exhaust memory either.  The caller decides what a name or a function *means* by
passing Python objects (sympy symbols, sympy functions, or builder callbacks), so one parser
serves activations, priors, layer maps and correlator requests.

Examples
--------
>>> import sympy as sp
>>> z = sp.Symbol("z")
>>> parse_expression("z*tanh(z)/2", names={"z": z}, functions={"tanh": sp.tanh})
z*tanh(z)/2
"""
from __future__ import annotations

import ast
from typing import Any, Callable, Mapping

import sympy as sp

from ..errors import ExpressionError

MAX_LENGTH = 4000
MAX_DEPTH = 60
MAX_EXPONENT = 64

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a ** b,
}


class _Located(ExpressionError):
    """An ExpressionError that already names where it happened."""


def _fragment(text: str, node: ast.AST) -> str:
    seg = ast.get_source_segment(text, node)
    return seg if seg is not None else type(node).__name__


def parse_expression(
    text: str,
    names: Mapping[str, Any] | None = None,
    functions: Mapping[str, Callable[..., Any]] | None = None,
    where: str = "expression",
) -> Any:
    """Parse ``text`` with the whitelist above and build the result from ``names``/``functions``.

    Parameters
    ----------
    text: the expression.
    names: allowed bare names and the objects they stand for.
    functions: allowed function names and the callables that build their value.
    where: a description of where the text comes from, used in error messages
        (e.g. ``"rules/mlp.toml: [priors.W] variance"``).
    """
    names = dict(names or {})
    functions = dict(functions or {})
    if not isinstance(text, str):
        raise ExpressionError(f"{where}: expected a string expression, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"{where}: expression longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise ExpressionError(f"{where}: empty expression")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"{where}: cannot parse {text!r}: {exc.msg} (column {exc.offset})") from None
    except ValueError as exc:       # Python 3.10: null bytes
        raise ExpressionError(f"{where}: cannot parse {text!r}: {exc}") from None
    except (RecursionError, MemoryError):
        raise ExpressionError(f"{where}: cannot parse {text!r}: nested too deeply for Python's parser") from None
    src = text.strip()

    def bad(node: ast.AST, why: str) -> ExpressionError:
        return _Located(f"{where}: {why}: {_fragment(src, node)!r} in {src!r}")

    def walk(node: ast.AST, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise bad(node, f"expression nested deeper than {MAX_DEPTH}")
        if isinstance(node, ast.Expression):
            return walk(node.body, depth + 1)
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise bad(node, "only int and float literals are allowed")
            if isinstance(v, int):
                return sp.Integer(v)
            return sp.Integer(int(v)) if float(v).is_integer() and abs(v) < 1e15 else sp.Float(v)
        if isinstance(node, ast.Name):
            if node.id.startswith("_") or not node.id.isidentifier():
                raise bad(node, "names may not start with '_'")
            if node.id not in names:
                allowed = ", ".join(sorted(names)) or "none"
                raise bad(node, f"unknown name {node.id!r} (allowed names: {allowed})")
            return names[node.id]
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return -walk(node.operand, depth + 1)
            if isinstance(node.op, ast.UAdd):
                return walk(node.operand, depth + 1)
            raise bad(node, "operator not allowed")
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise bad(node, "operator not allowed (use + - * / **)")
            left = walk(node.left, depth + 1)
            right = walk(node.right, depth + 1)
            if isinstance(node.op, ast.Pow):
                if not (isinstance(right, sp.Basic) and right.is_number):
                    if isinstance(right, sp.Basic) and right.free_symbols:
                        pass  # symbolic exponents are fine (no size blow-up)
                    else:
                        raise bad(node, "exponent must be a number or a symbol")
                elif abs(complex(right)) > MAX_EXPONENT:
                    raise bad(node, f"exponent larger than {MAX_EXPONENT}")
            try:
                return op(left, right)
            except _Located:
                raise
            except ExpressionError as exc:
                raise bad(node, str(exc)) from None
            except (TypeError, ValueError, ZeroDivisionError) as exc:
                raise bad(node, f"invalid operation ({exc})") from None
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise bad(node, "only calls of plain function names are allowed")
            fname = node.func.id
            if fname.startswith("_") or fname not in functions:
                allowed = ", ".join(sorted(functions)) or "none"
                raise bad(node, f"unknown function {fname!r} (allowed functions: {allowed})")
            if node.keywords:
                raise bad(node, "keyword arguments are not allowed")
            if any(isinstance(a, ast.Starred) for a in node.args):
                raise bad(node, "starred arguments are not allowed")
            args = [walk(a, depth + 1) for a in node.args]
            try:
                return functions[fname](*args)
            except _Located:
                raise
            except ExpressionError as exc:
                raise bad(node, str(exc)) from None
            except (TypeError, ValueError) as exc:
                raise bad(node, f"bad call of {fname} ({exc})") from None
        raise bad(node, f"{type(node).__name__} is not allowed")

    return walk(tree, 0)
