"""Activation functions as sympy expressions in ``z``.

An activation is given as text: a named shortcut (``tanh``, ``relu``, ``gelu``,
``leaky_relu:0.1``, ...) or any expression in ``z`` built from the whitelisted functions
below (``z*tanh(z)``, ``sin(z) + z/2``).  Text goes through the restricted parser of
:mod:`ntkdiagrams.language.expressions`; nothing is ``eval``-ed.

Derivatives come from sympy.  Piecewise-linear activations are written with ``Max``/``Min``
so that sympy differentiates them exactly: ``d/dz Max(0, z) = Heaviside(z)`` and
``d²/dz² Max(0, z) = DiracDelta(z)``.  Numerical code must treat ``DiracDelta`` exactly
(it is never smoothed): :meth:`Activation.has_delta` tells whether a derivative contains one.

Scale-invariant activations, σ(z) = a₊ z for z > 0 and a₋ z for z < 0 (PDLT §5.2), are
recognised and carry ``scale_invariant = (a₊, a₋)``.

Examples
--------
>>> act = parse_activation("relu")
>>> act.expr
Max(0, z)
>>> act.derivative(1)
Heaviside(z)
>>> parse_activation("leaky_relu:0.1").scale_invariant
(1, 1/10)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np
import sympy as sp

from ..errors import ActivationError, ExpressionError
from ..language.expressions import parse_expression

z = sp.Symbol("z", real=True)

#: Functions allowed inside a user activation expression.
ALLOWED_FUNCTIONS: dict[str, Callable] = {
    "tanh": sp.tanh, "erf": sp.erf, "exp": sp.exp, "log": sp.log, "sin": sp.sin,
    "cos": sp.cos, "sqrt": sp.sqrt, "Abs": sp.Abs, "abs": sp.Abs, "Max": sp.Max,
    "Min": sp.Min, "max": sp.Max, "min": sp.Min, "atan": sp.atan, "sinh": sp.sinh,
    "cosh": sp.cosh, "Heaviside": sp.Heaviside,
    "sigmoid": lambda x: 1 / (1 + sp.exp(-x)),
    "relu": lambda x: sp.Max(0, x),
}

#: Named shortcuts; values are expressions in ``z`` written with the whitelisted functions.
SHORTCUTS: dict[str, str] = {
    "linear": "z",
    "identity": "z",
    "tanh": "tanh(z)",
    "erf": "erf(z)",
    "relu": "Max(0, z)",
    "gelu": "z/2*(1 + erf(z/sqrt(2)))",
    "swish": "z/(1 + exp(-z))",
    "silu": "z/(1 + exp(-z))",
    "sigmoid": "1/(1 + exp(-z))",
    "sin": "sin(z)",
    "softplus": "log(1 + exp(z))",
}


#: σ^{(k)}, k = 1…4, of the shortcuts as :meth:`Activation.derivative` computes them
#: (``sp.simplify(sp.diff(σ, z, k))``, sympy 1.14), written out: the first ``sp.simplify`` of a
#: process imports sympy.physics.units (~0.2 s) and each call costs 0.02–0.1 s, a large part of a
#: short CLI run (issue 15).  Keys: the shortcut texts of :data:`SHORTCUTS`; the texts parse (with
#: :data:`DERIVATIVE_NAMES`) to expressions structurally identical (``==``, same ``srepr``) to
#: simplify's, which tests/test_activations_derivatives.py checks for every entry (a numeric factor
#: written last: ``4*(2*z**2 - 1)`` would be distributed by sympy on construction).
KNOWN_DERIVATIVES: dict[str, tuple[str, ...]] = {
    "z": ("1", "0", "0", "0"),
    "tanh(z)": ("cosh(z)**(-2)", "-2*tanh(z)/cosh(z)**2", "-6*tanh(z)**4 + 8*tanh(z)**2 - 2",
                "24*tanh(z)**5 - 40*tanh(z)**3 + 16*tanh(z)"),
    "erf(z)": ("2*exp(-z**2)/sqrt(pi)", "-4*z*exp(-z**2)/sqrt(pi)", "exp(-z**2)*(2*z**2 - 1)*4/sqrt(pi)",
               "(-16*z**3 + 24*z)*exp(-z**2)/sqrt(pi)"),
    "Max(0, z)": ("Heaviside(z)", "DiracDelta(z)", "DiracDelta(z, 1)", "DiracDelta(z, 2)"),
    "z/2*(1 + erf(z/sqrt(2)))": (
        "sqrt(2)*z*exp(-z**2/2)/(2*sqrt(pi)) + erf(sqrt(2)*z/2)/2 + 1/2",
        "sqrt(2)*(2 - z**2)*exp(-z**2/2)/(2*sqrt(pi))",
        "sqrt(2)*z*(z**2 - 4)*exp(-z**2/2)/(2*sqrt(pi))",
        "sqrt(2)*(-z**4 + 7*z**2 - 4)*exp(-z**2/2)/(2*sqrt(pi))"),
    "z/(1 + exp(-z))": (
        "(z + exp(z) + 1)/(4*cosh(z/2)**2)",
        "(z*(1 - exp(z)) + 2*exp(z) + 2)*exp(z)/(exp(z) + 1)**3",
        "(z*((exp(z) + 1)**3 - 6*(exp(z) + 1)**2 + 6*exp(z) + 6) - 3*(exp(z) + 1)**3 + 6*(exp(z) + 1)**2)"
        "*exp(z)/(exp(z) + 1)**5",
        "(-z*((exp(z) + 1)**3 - 14*(exp(z) + 1)**2 + 36*exp(z) + 12) + 4*(exp(z) + 1)**3 - 24*(exp(z) + 1)**2"
        " + 24*exp(z) + 24)*exp(z)/(exp(z) + 1)**5"),
    "1/(1 + exp(-z))": (
        "1/(4*cosh(z/2)**2)",
        "(1 - exp(z))*exp(z)/(exp(z) + 1)**3",
        "((exp(z) + 1)**3 - 6*(exp(z) + 1)**2 + 6*exp(z) + 6)*exp(z)/(exp(z) + 1)**5",
        "(-(exp(z) + 1)**3 + 14*(exp(z) + 1)**2 - 36*exp(z) - 12)*exp(z)/(exp(z) + 1)**5"),
    "sin(z)": ("cos(z)", "-sin(z)", "-cos(z)", "sin(z)"),
    "log(1 + exp(z))": (
        "exp(z)/(exp(z) + 1)",
        "1/(4*cosh(z/2)**2)",
        "(1 - exp(z))*exp(z)/(exp(3*z) + 3*exp(2*z) + 3*exp(z) + 1)",
        "(exp(2*z) - 4*exp(z) + 1)*exp(z)/(exp(4*z) + 4*exp(3*z) + 6*exp(2*z) + 4*exp(z) + 1)"),
}

#: the functions and constants of :data:`KNOWN_DERIVATIVES`' texts
DERIVATIVE_NAMES: dict[str, Callable] = {
    "tanh": sp.tanh, "cosh": sp.cosh, "exp": sp.exp, "erf": sp.erf, "sqrt": sp.sqrt, "sin": sp.sin,
    "cos": sp.cos, "log": sp.log, "Heaviside": sp.Heaviside, "DiracDelta": sp.DiracDelta,
}


def known_derivative(expr: sp.Expr, k: int) -> sp.Expr | None:
    """σ^{(k)} from :data:`KNOWN_DERIVATIVES` where σ = ``expr`` is a shortcut's expression and
    1 ≤ k ≤ 4 (the same expression as ``sp.simplify(sp.diff(expr, z, k))``), else None."""
    if not 1 <= k <= 4:
        return None
    for text, derivs in KNOWN_DERIVATIVES.items():
        if _shortcut_expr(text) == expr:
            return parse_expression(derivs[k - 1], names={"z": z, "pi": sp.pi}, functions=DERIVATIVE_NAMES,
                                    where=f"derivative {k} of {text}")
    return None


@lru_cache(maxsize=32)
def _shortcut_expr(text: str) -> sp.Expr:
    return parse_expression(text, names={"z": z}, functions=ALLOWED_FUNCTIONS, where="activation")


@dataclass(frozen=True)
class Activation:
    """An activation σ(z) with exact sympy derivatives and numpy evaluators.

    Attributes
    ----------
    name: the text it was made from (shortcut or expression).
    expr: σ as a sympy expression in :data:`z`.
    scale_invariant: ``(a₊, a₋)`` when σ = a₊ max(z,0) + a₋ min(z,0), else ``None``.
    """

    name: str
    expr: sp.Expr
    scale_invariant: tuple | None = None
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def derivative(self, k: int) -> sp.Expr:
        """The k-th derivative σ^{(k)}(z) as a sympy expression (k = 0 is σ itself)."""
        if k < 0:
            raise ValueError("derivative order must be >= 0")
        key = ("d", k)
        if key not in self._cache:
            known = known_derivative(self.expr, k) if k else self.expr
            self._cache[key] = known if known is not None else sp.simplify(sp.diff(self.expr, z, k))
        return self._cache[key]

    @property
    def odd(self) -> bool:
        """True when σ(−z) = −σ(z) identically (tanh, erf, sin, linear); sympy decides, and an
        expression it cannot prove odd counts as not odd."""
        key = ("odd",)
        if key not in self._cache:
            self._cache[key] = sp.simplify(self.expr.subs(z, -z) + self.expr) == 0
        return self._cache[key]

    def has_delta(self, k: int) -> bool:
        """True when σ^{(k)} contains a Dirac delta (piecewise activations, k ≥ 2).

        The unsimplified derivative decides where it has none (simplification does not create a
        δ): smooth activations skip :meth:`derivative`'s ``sp.simplify``, whose first call
        alone imports sympy.physics.units (~0.2 s)."""
        key = ("delta", k)
        if key not in self._cache:
            raw = sp.diff(self.expr, z, k) if k else self.expr
            self._cache[key] = raw.has(sp.DiracDelta) and self.derivative(k).has(sp.DiracDelta)
        return self._cache[key]

    def numpy(self, k: int = 0) -> Callable[[np.ndarray], np.ndarray]:
        """A vectorised numpy function for σ^{(k)}.

        Raises :class:`ActivationError` if σ^{(k)} contains a Dirac delta, which has no
        pointwise value (Gaussian expectations treat it analytically instead)."""
        key = ("np", k)
        if key not in self._cache:
            d = self.derivative(k)
            if d.has(sp.DiracDelta):
                raise ActivationError(
                    f"activation {self.name!r}: derivative {k} contains a Dirac delta "
                    f"({d}); it has no pointwise numerical value")
            self._cache[key] = lambdify_z(d)
        return self._cache[key]


def lambdify_numpy(args, expr: sp.Expr, functions: dict | None = None) -> Callable:
    """``sp.lambdify(args, expr, modules=[functions, "numpy"])`` with the numpy module object in
    place of the string: the same printer (sympy's NumPyPrinter) and the same numpy functions,
    but the names resolve in ``numpy.__dict__`` instead of a namespace filled by
    ``from numpy import *``, which loads every lazily imported numpy submodule (numpy.f2py,
    numpy.testing, numpy.ma: 0.1–0.3 s once per process; importing scipy.special loads them
    too).  ``functions``: names that take precedence (as in lambdify's own list of modules)."""
    return sp.lambdify(args, expr, modules=[functions, np] if functions else [np])


def lambdify_z(expr: sp.Expr) -> Callable[[np.ndarray], np.ndarray]:
    """Lambdify an expression in ``z`` to numpy, mapping erf and Heaviside explicitly (scipy.special,
    ~0.25 s of import, only where the expression has an erf)."""
    functions = {"Heaviside": lambda x, h0=0.5: np.heaviside(x, h0)}
    if expr.has(sp.erf):
        import scipy.special

        functions["erf"] = scipy.special.erf
    fn = lambdify_numpy(z, expr, functions)
    if not expr.free_symbols:
        const = float(expr)
        return lambda x: np.full(np.shape(x), const, dtype=float)
    return fn


#: floating-point versions of the functions a user activation may contain (for the screen below)
_FLOAT_FUNCTIONS = {sp.tanh: math.tanh, sp.erf: math.erf, sp.exp: math.exp, sp.log: math.log, sp.sin: math.sin,
                    sp.cos: math.cos, sp.Abs: abs, sp.atan: math.atan, sp.sinh: math.sinh, sp.cosh: math.cosh,
                    sp.Max: max, sp.Min: min, sp.Heaviside: lambda x, h0=0.5: 1.0 if x > 0 else 0.0 if x < 0 else h0}


def _float_at(expr: sp.Expr, t: float):
    """σ(t) in floating point, or None where that fails (overflow, complex, unknown function)."""
    if expr == z:
        return t
    try:
        if expr.is_Number or expr.is_NumberSymbol:
            value = float(expr)
            return value if math.isfinite(value) else None
        args = [_float_at(a, t) for a in expr.args]
        if any(a is None for a in args):
            return None
        if expr.is_Add:
            value = math.fsum(args)
        elif expr.is_Mul:
            value = math.prod(args)
        elif expr.is_Pow:
            value = args[0] ** args[1]
        else:
            f = _FLOAT_FUNCTIONS.get(expr.func)
            value = f(*args) if f is not None else None
    except (ArithmeticError, ValueError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _not_homogeneous(expr: sp.Expr) -> bool:
    """A cheap screen before the exact test of :func:`_scale_invariant_slopes` (whose ``simplify``
    can take minutes on deeply nested functions): True when σ(t)/t takes clearly different values
    at two points of the same sign, so σ is not a₊ z for z > 0 and a₋ z for z < 0."""
    for sign in (1.0, -1.0):
        ratios = [v / t for t in (sign * 0.25, sign * 0.5, sign * 1.0, sign * 1.5, sign * 2.0)
                  if (v := _float_at(expr, t)) is not None]
        if len(ratios) >= 2 and max(ratios) - min(ratios) > 1e-6 * max(1.0, max(map(abs, ratios))):
            return True
    return False


def _scale_invariant_slopes(expr: sp.Expr):
    """Return (a₊, a₋) if expr = a₊ z (z>0), a₋ z (z<0) exactly, else None."""
    if _not_homogeneous(expr):
        return None
    zp = sp.Symbol("zp", positive=True)
    try:
        plus = sp.simplify(expr.subs(z, zp) / zp)
        minus = sp.simplify(expr.subs(z, -zp) / (-zp))
    except Exception:  # pragma: no cover - sympy edge cases
        return None
    if plus.free_symbols or minus.free_symbols:
        return None
    if not (plus.is_number and minus.is_number):
        return None
    return (_nsimplify(plus), _nsimplify(minus)) if (plus.is_real and minus.is_real) else None


#: the functions in mpmath.identify's formulas (called without constants)
_IDENTIFY_FUNCTIONS = {"sqrt": sp.sqrt, "log": sp.log, "exp": sp.exp}


def _nsimplify(x: sp.Expr, rational: bool | None = None) -> sp.Expr:
    """``sympy.nsimplify(x)`` of a number ``x`` (default options), step for step, except that the
    formula mpmath.identify finds (``'(1/10)'``, ``'(sqrt(2)/2)'``) is read by the restricted
    parser: sympy reads it with ``sympify``, which ``eval``s it.  Same results (0.1 → 1/10,
    0.7071067811865476 → sqrt(2)/2), nothing executed."""
    import mpmath

    if x.is_Integer:
        return x
    x = x.xreplace({sp.Float("inf"): sp.oo, sp.Float("-inf"): -sp.oo})
    if x is sp.oo or x is -sp.oo:
        return x
    tolerance = 10 ** -min([15] + [mpmath.libmp.libmpf.prec_to_dps(f._prec) for f in x.atoms(sp.Float)])
    prec = 30
    bprec = int(prec * 3.33)
    re, im = x.evalf(prec, chop=True).as_real_imag()
    if not (re.is_Number and im.is_Number):
        return x

    def identify(v):
        orig = mpmath.mp.dps
        xv = v._to_mpmath(bprec)
        try:
            mpmath.mp.dps = prec
            formula = mpmath.identify(xv, constants={}, tol=tolerance, full=False)
            if not formula:
                raise ValueError
            found = parse_expression(formula, functions=_IDENTIFY_FUNCTIONS, where="mpmath.identify")
            if v and not found:
                raise ValueError
            if found.is_finite is False and xv not in [mpmath.inf, mpmath.ninf]:
                raise ValueError
            return found
        finally:
            mpmath.mp.dps = orig

    try:
        if re:
            re = identify(re)
        if im:
            im = identify(im)
    except ValueError:      # ExpressionError included
        return _real_to_rational(x) if rational is None else x
    rv = re + im * sp.I
    if rv != x or rational is False:
        return rv
    return _real_to_rational(x)


def _real_to_rational(x: sp.Expr) -> sp.Expr:
    """sympy's ``_real_to_rational(x)`` (base-10 conversion of each Float), through :func:`_nsimplify`."""
    import mpmath

    reps = {}
    for fl in x.atoms(sp.Float):
        key = fl
        r = _nsimplify(fl, rational=False)
        if fl and not r:
            r = sp.Rational(fl)
        elif not r.is_Rational:
            if fl in (sp.Float("inf"), sp.Float("-inf")):
                r = sp.zoo
            elif fl < 0:
                fl = -fl
                d = sp.Pow(10, int(mpmath.log(fl) / mpmath.log(10)))
                r = -sp.Rational(str(fl / d)) * d
            elif fl > 0:
                d = sp.Pow(10, int(mpmath.log(fl) / mpmath.log(10)))
                r = sp.Rational(str(fl / d)) * d
            else:
                r = sp.Integer(0)
        reps[key] = r
    return x.subs(reps, simultaneous=True)


def parse_activation(text: str) -> Activation:
    """Parse an activation: a shortcut name, ``leaky_relu:a``, or an expression in ``z``."""
    if not isinstance(text, str) or not text.strip():
        raise ActivationError("activation must be a non-empty string such as 'tanh' or 'z*tanh(z)'")
    return _parse_activation(text)


@lru_cache(maxsize=128)
def _parse_activation(text: str) -> Activation:
    t = text.strip()
    if t == "leaky_relu" or t.startswith("leaky_relu:"):
        _, _, slope = t.partition(":")
        slope = slope.strip() or "0.01"
        try:
            a = parse_expression(slope, where=f"activation {t!r}: slope")
        except ExpressionError as exc:
            raise ActivationError(str(exc)) from None
        if not a.is_number or not a.is_real:
            raise ActivationError(f"activation {t!r}: slope must be a real number")
        expr = sp.Max(0, z) + a * sp.Min(0, z)
    else:
        source = SHORTCUTS.get(t, t)
        try:
            expr = parse_expression(source, names={"z": z}, functions=ALLOWED_FUNCTIONS,
                                    where=f"activation {t!r}")
        except ExpressionError as exc:
            known = ", ".join(sorted(SHORTCUTS)) + ", leaky_relu:a"
            raise ActivationError(f"{exc}. Known shortcuts: {known}; or give an expression in z") from None
        if not isinstance(expr, sp.Expr):
            raise ActivationError(f"activation {t!r} is not an expression in z")
        if expr.free_symbols - {z}:
            raise ActivationError(f"activation {t!r}: only the variable z is allowed")
    if not expr.free_symbols:
        raise ActivationError(f"activation {t!r} does not depend on z")
    return Activation(name=t, expr=expr, scale_invariant=_scale_invariant_slopes(expr))


def available_activations() -> list[str]:
    """Names of the built-in shortcuts."""
    return sorted(SHORTCUTS) + ["leaky_relu:a"]
