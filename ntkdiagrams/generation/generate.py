"""Generated numeric code: a standalone numpy or JAX module for derived statistics.

:func:`codegen` compiles the recursions of the requested statistics (and of every tensor they
need) exactly as :func:`ntkdiagrams.evaluate` does (:class:`ntkdiagrams.numerics.evaluate.CompiledRecursion`:
each term c(C_b, C_W, …) · Π T^{(ℓ)} · Π ⟨Π_s f_s(z_{β_s})⟩_{K^{(ℓ)}} becomes one einsum over
input indices), and writes them out as Python source:

* every univariate function f_s (σ^{(k)} products; for kinked σ its two branches at z ≷ 0) and every
  coefficient is printed by sympy's own code printers (``sympy.printing.numpy``: SciPyPrinter for
  numpy, JaxPrinter for JAX);
* each recursion is preceded by its text form (:meth:`ntkdiagrams.engine.recursion.Recursion.text`)
  as a comment;
* the Gaussian expectations ⟨…⟩_K are computed by a runtime copied into the module
  (:mod:`ntkdiagrams.generation.runtime_source`): for numpy the package's own methods (fast path
  with its ladders and table, orthant moments for the ReLU family, cone method), with the package's
  constants, so that the module agrees with :func:`ntkdiagrams.evaluate` to rounding; for JAX fixed
  trapezoid rules in Cholesky coordinates (smooth σ, within a documented scale) and the orthant
  moments (ReLU family).  Expectations are requested in the package's slot order (by sp.srepr);
* blob sums of activations with kinks are integrated by parts onto Hermite polynomials, as in
  :mod:`ntkdiagrams.numerics.hermite` (the polynomial Q(y) is printed from
  :func:`ntkdiagrams.numerics.hermite.q_polynomial`).

The module imports numpy (and scipy.special where a function needs it), or jax (float64); its
``evaluate(inputs, depth, **hyper)`` takes the rule file's hyper-parameters by symbol name (a number
or one value per layer 1..L, entry ℓ−1 for the map that makes layer ℓ, as ``nd.evaluate``'s
``params``; a width ratio r likewise, L − 1 values allowed) and returns ``[{"layer": ℓ, name:
array, …}, …]`` like :func:`ntkdiagrams.evaluate`.
"""
from __future__ import annotations

import keyword
import string
from importlib import resources
from typing import Sequence

import numpy as np
import sympy as sp
from sympy.printing.numpy import JaxPrinter, SciPyPrinter

from .. import __version__
from ..engine.derivation import derive, resolve_rules
from ..errors import InputError, UnsupportedError
from ..numerics.activations import Activation, parse_activation
from ..numerics.activations import z as zsym
from ..numerics.evaluate import RATIO_SYMBOLS, CompiledRecursion, required_tensors
from ..numerics.gaussian.factors import KINK_FUNCTIONS, prepare_factor
from ..numerics.gaussian import fast, ladder, orthant, rules, sharpness, table, twofactor
from ..numerics.gaussian.cone import DEFAULT_DEGREE_BY_DIM, SMOOTH_1D_NODES_PER_SLOPE
from ..numerics.gaussian.context import tables_folder
from ..numerics.gaussian.rules import radial_rule, simplex_rule
from ..numerics.hermite import q_polynomial
from ..engine.closure import open_tensors, shortcut_coefficients
from ..numerics.hyperparameters import default_values
from ..settings import Settings

__all__ = ["TARGETS", "codegen"]

#: the code targets
TARGETS = ("numpy", "jax")

#: radial Gauss rule size (exact for polynomial branches of total degree ≤ 2·12 − 1) and simplex
#: rule sizes by number of variables (those of the package's cone method for polynomial branches)
RADIAL_NODES = 12
SIMPLEX_NODES = {3: 20, 4: 12}
#: Gauss–Legendre nodes per arc of the m = 2 cone method for kinked factors
KINK_ARC_NODES = 24
#: JAX target: its fixed trapezoid rules (FIXED_HALF nodes per side on [−8.6, 8.6] in every
#: Cholesky coordinate) are accurate to ≲ 1e-8 while every coordinate scale s_j = max_i |L_ij|
#: stays below these bounds (h ≤ 0.15/s_j, calibrated on tanh and its derivatives), by the number
#: of distinct inputs of an expectation; beyond, the module raises (eagerly) or returns NaN (jit)
FIXED_MAX_SCALE = {1: 1.6, 2: 1.1, 3: 0.7, 4: 0.4}


def _fast_constants() -> dict:
    """The package's fast-path constants (ladders, split-rule grid, table) for the numpy runtime."""
    return {"MAX_VARIANCE": ladder.FAST_MAX_VARIANCE, "LADDER_GH": ladder.FAST_LADDER_GH,
            "LADDER": ladder.FAST_LADDER, "LADDER_M2": ladder.FAST_LADDER_M2,
            "LADDER_M34": ladder.FAST_LADDER_M34, "SLACK": dict(ladder.FAST_SLACK),
            "GH_MAX": ladder.FAST_GH_MAX, "SPLIT_C": rules.SPLIT_C, "SPLIT_DC": rules.SPLIT_DC,
            "SPLIT_RECURRENCE_TERMS": rules.SPLIT_RECURRENCE_TERMS, "TABLE_H_MU": table.TABLE_H_MU,
            "TABLE_H_S": table.TABLE_H_S, "TABLE_REACH": table.TABLE_REACH,
            "TABLE_DEGREE": table.TABLE_DEGREE, "TABLE_DEGREE_WIDE": table.TABLE_DEGREE_WIDE,
            "TABLE_WIDE_S": table.TABLE_WIDE_S, "TABLE_DEGREE_WIDER": table.TABLE_DEGREE_WIDER,
            "TABLE_WIDER_S": table.TABLE_WIDER_S, "CHUNK_POINTS": fast.FAST_CHUNK_POINTS,
            "ORDER_SAVING": fast.FAST_ORDER_SAVING, "PIVOT_RATIO": fast.FAST_PIVOT_RATIO,
            "SMOOTH_1D_NODES_PER_SLOPE": SMOOTH_1D_NODES_PER_SLOPE, "SHARPNESS_FROM": sharpness.SHARPNESS_FROM,
            "TWO_FACTOR_X": twofactor.TWO_FACTOR_X, "TWO_FACTOR_SAVING": twofactor.TWO_FACTOR_SAVING,
            "TWO_FACTOR_MIN_VARIANCE": twofactor.TWO_FACTOR_MIN_VARIANCE,
            "SMALL_VARIANCE": ladder.SMALL_VARIANCE, "SMALL_TIGHTENING": ladder.SMALL_TIGHTENING,
            "SMALL_MIN_NODES": ladder.SMALL_MIN_NODES}


def _sharpness(expr: sp.Expr, settings) -> float:
    """The package's sharpness κ of a smooth function (:mod:`ntkdiagrams.numerics.gaussian.sharpness`),
    for the numpy runtime's ladders (1 where the package would not compute one)."""
    folder = None if settings is None else tables_folder(settings)
    try:
        f = prepare_factor(expr)
    except (InputError, UnsupportedError):
        return 1.0
    return sharpness.sharpness(f, ladder.SHARPNESS_RUNGS, folder)


class _JaxPrinter(JaxPrinter):
    """sympy's JaxPrinter, with erf as jax.scipy.special.erf (sympy prints math.erf)."""

    def _print_erf(self, expr):
        return f"{self._module_format('jax.scipy.special.erf')}({self._print(expr.args[0])})"


class _SciPyPrinter(SciPyPrinter):
    """sympy's SciPyPrinter (numpy, scipy.special for erf …), with π as numpy.pi (not scipy.constants)."""

    def _print_Pi(self, expr):
        return self._module_format("numpy.pi")


def _printer(target: str):
    settings = {"fully_qualified_modules": True, "inline": True, "allow_unknown_functions": False}
    return _JaxPrinter(settings) if target == "jax" else _SciPyPrinter(settings)


def _branch(g: sp.Expr, sign: int) -> sp.Expr:
    """g on the side sign(z) = sign, continued to all z (Max(0, z) → z | 0, Heaviside → 1 | 0)."""
    zs = sp.Symbol("zbranch", positive=True)
    return sp.expand(g.subs(zsym, sign * zs).subs(zs, sign * zsym))


class _Functions:
    """Registry of the univariate functions of z: expression → id, kinked or smooth."""

    def __init__(self):
        self.exprs: list = []
        self.index: dict = {}

    def id(self, expr: sp.Expr) -> int:
        expr = sp.expand(expr)
        if expr.has(sp.DiracDelta):
            raise UnsupportedError(f"generated code: a Gaussian expectation needs the Dirac delta {expr}; "
                                   "use a smooth activation or statistics without explicit δ terms")
        if expr not in self.index:
            self.index[expr] = len(self.exprs)
            self.exprs.append(expr)
        return self.index[expr]

    def polynomial_degree(self, fid: int) -> int | None:
        """Degree of a smooth polynomial function (as the package's Factor.degree), else None."""
        e = self.exprs[fid]
        if self.kinked(fid) or not e.is_polynomial(zsym):
            return None
        return int(sp.degree(e, zsym)) if e != 0 else 0

    def ranks(self) -> dict:
        """fid → rank in the order of sp.srepr (the package's canonical slot order)."""
        order = sorted(range(len(self.exprs)), key=lambda i: sp.srepr(self.exprs[i]))
        return {fid: r for r, fid in enumerate(order)}

    def kinked(self, fid: int) -> bool:
        return self.exprs[fid].has(*KINK_FUNCTIONS)


class _Plan:
    """Everything the module needs: functions, expectations, blob sums, sites, recursions."""

    def __init__(self, act: Activation, target: str):
        self.act = act
        self.target = target
        self.fns = _Functions()
        self.sites: list = []      # (k, eq_terms, dist_terms, two)
        self.site_index: dict = {}
        self.blobs: list = []      # (tensor, args, sites [(labels, legs, site id)], axes)
        self.blob_index: dict = {}
        self.max_vars = 0

    def gauss_call(self, funcs) -> tuple[str, list]:
        """Code for the expectation tensor of ``funcs`` in the package's canonical order (by
        sp.srepr, ``GaussianCache``: the same slot order gives the same rules), and that order."""
        fids = [self.fns.id(f) for f in funcs]
        order = sorted(range(len(fids)), key=lambda s: sp.srepr(funcs[s]))
        canon = tuple(fids[s] for s in order)
        self.max_vars = max(self.max_vars, len(canon))
        return f"E.gauss({canon!r})", order

    def site(self, funcs: tuple, k: int) -> int:
        key = (funcs, k)
        if key in self.site_index:
            return self.site_index[key]
        if len(funcs) > 2:  # the printed contraction (runtime contract_blob) knows one- and two-input sites
            raise UnsupportedError(f"generated code: a blob site on {len(funcs)} inputs (kinked activation, "
                                   "order 1/n²) is not supported; evaluate with ntkdiagrams.evaluate")
        p0 = sp.Symbol("P00")
        prod = sp.expand(sp.Mul(*funcs))
        monos1, coeffs1, _g, pv1, ts1 = q_polynomial(k, 1)
        eq_terms = []
        for (p,), c in zip(monos1, coeffs1):
            c1 = sp.expand(c.xreplace({t: 1 for t in ts1}).xreplace({pv1[0]: p0}))
            eq_terms.append((self.fns.id(prod * zsym ** p), c1))
            self.max_vars = max(self.max_vars, 1)
        dist = None
        if len(funcs) == 2:
            monos, coeffs, gammas, pvars, ts = q_polynomial(k, 2)
            P = sp.symbols("P00 P01 P11")
            dist = []
            for gi, g in enumerate(gammas):
                unit = {t: (1 if j == gi else 0) for j, t in enumerate(ts)}
                terms = []
                for (p, q), c in zip(monos, coeffs):
                    cg = sp.expand(c.xreplace(unit).xreplace(dict(zip(pvars, P))))
                    if cg != 0:
                        terms.append((self.fns.id(funcs[0] * zsym ** p), self.fns.id(funcs[1] * zsym ** q), cg))
                dist.append((g, terms))
            self.max_vars = max(self.max_vars, 2)
        self.site_index[key] = len(self.sites)
        self.sites.append((k, eq_terms, dist))
        return self.site_index[key]

    def blob(self, key) -> int:
        if key in self.blob_index:
            return self.blob_index[key]
        tensor, args, sites, axes = key
        if not isinstance(tensor, str):
            raise UnsupportedError(f"generated code: a blob sum over a product of tensors {tensor} (order 1/n²) "
                                   "is not supported; evaluate with ntkdiagrams.evaluate")
        specs = []
        for labels, funcs, legs in sites:
            sid = self.site(tuple(funcs), len(legs))
            specs.append((tuple(str(a) for a in labels), tuple(legs), sid))
        args_s = tuple((kind, x if kind == "leg" else str(x)) for kind, x in args)
        self.blob_index[key] = len(self.blobs)
        self.blobs.append((tensor, args_s, specs, tuple(str(a) for a in axes)))
        return self.blob_index[key]


#: argument names of the generated evaluate, which no hyper-parameter may take
_RESERVED = ("inputs", "depth", "allow_incomplete", "max_scale", "hyper")


def _check_names(rules) -> dict:
    """Symbol → (local variable, key of the layer's hyper-parameter dict) in the generated code: the
    rule file's symbols by name, the width ratios r_ℓ, r_{ℓ−1} (RATIO_SYMBOLS) under the keys
    "(r_ell)", "(r_ell_minus_1)" that no rule-file name can take."""
    out = {}
    for name in rules.symbols:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise UnsupportedError(f"generated code: the rule file's symbol {name!r} is not a Python identifier")
        if name in _RESERVED:
            raise UnsupportedError(f"generated code: the rule file's symbol {name!r} is an argument name of the "
                                   "generated evaluate")
        out[rules.symbols[name]] = ("h_" + name, name)
    if rules.width_ratio is not None:
        name = rules.width_ratio.ratio_name
        if not name.isidentifier() or keyword.iskeyword(name):
            raise UnsupportedError(f"generated code: the width ratio {name!r} is not a Python identifier")
        out[RATIO_SYMBOLS[0]] = ("ratio_ell", "(r_ell)")
        out[RATIO_SYMBOLS[1]] = ("ratio_ell_minus_1", "(r_ell_minus_1)")
    return out


def _term_code(plan: _Plan, comp: CompiledRecursion, fn, factors, printer, symbol_names) -> str:
    """One term: ``out = out + c * einsum(...)``."""
    letters = string.ascii_lowercase
    m = len(comp.labels)
    coeff = fn.expr.xreplace({s: sp.Symbol(symbol_names[s][0]) for s in fn.expr.free_symbols
                              if s in symbol_names})
    c = printer.doprint(coeff)
    arrays, subs = [], []
    for fac in factors:
        if fac.kind == "tensor":
            arrays.append(f'T["{fac.key}"]')
            subs.append("".join(letters[a] for a in fac.labels))
        elif fac.kind == "gram":
            arrays.append("gram")
            subs.append("".join(letters[a] for a in fac.labels))
        elif fac.kind == "hermite":
            j = plan.blob(fac.key)
            arrays.append(f"E.blob({j}, T)")
            subs.append("".join(letters[comp.labels.index(a)] for a in fac.labels))
        else:
            funcs, labels = fac.key
            call, order = plan.gauss_call(funcs)
            arrays.append(call)
            subs.append("".join(letters[comp.labels.index(labels[s])] for s in order))
    missing = sorted(set(range(m)) - {letters.index(ch) for s in subs for ch in s})
    for a in missing:
        arrays.append("ones")
        subs.append(letters[a])
    if not arrays:
        return f"    out = out + ({c})"
    spec = ",".join(subs) + "->" + letters[:m]
    return f"    out = out + ({c}) * einsum({spec!r}, {', '.join(arrays)})"


def _coefficients(b: sp.Expr) -> tuple:
    """Ascending float coefficients of a polynomial branch ((0.0,) for 0), as the package's Factor.poly."""
    if b == 0:
        return (0.0,)
    return tuple(float(c) for c in reversed(sp.Poly(b, zsym).all_coeffs()))


def _function_code(fid: int, expr: sp.Expr, kinked: bool, degree, printer, sharp=None) -> list[str]:
    """The function's code and its entries in _F, _KINKED, _POLY, _PIECES, and in _SHARP its
    sharpness ``sharp`` where given (numpy target)."""
    def body(e):
        code = printer.doprint(e)
        return code if e.has(zsym) else f"{code} + 0.0 * z"
    lines = []
    if kinked:
        for suffix, sign in (("p", 1), ("m", -1)):
            b = _branch(expr, sign)
            if b.has(*KINK_FUNCTIONS) or not b.is_polynomial(zsym):
                raise UnsupportedError(f"generated code: the branch {b} of {expr} (z {'>' if sign > 0 else '<'} 0) "
                                       "is not a polynomial; kinks are supported for piecewise-polynomial "
                                       "activations (ReLU family)")
            lines += [f"def _f{fid}{suffix}(z):", f"    return {body(b)}", ""]
        lines.append(f"_F[{fid}] = (_f{fid}p, _f{fid}m)")
        lines.append(f"_KINKED[{fid}] = True")
        lines.append(f"_PIECES[{fid}] = {_coefficients(_branch(expr, 1))!r}, {_coefficients(_branch(expr, -1))!r}")
    else:
        lines += [f"def _f{fid}(z):", f"    # {expr}", f"    return {body(expr)}", ""]
        lines.append(f"_F[{fid}] = (_f{fid}, _f{fid})")
        lines.append(f"_KINKED[{fid}] = False")
        if sharp is not None and sharp < 1.0:
            lines.append(f"_SHARP[_f{fid}] = {sharp!r}")
        if degree is not None:
            lines.append(f"_POLY[_f{fid}] = {degree}")
            lines.append(f"_PIECES[{fid}] = {_coefficients(expr)!r}, {_coefficients(expr)!r}")
    return lines + ["", ""]


def _array(a: np.ndarray) -> str:
    return "np.array([" + ", ".join(repr(float(v)) for v in np.ravel(a)) + f"]).reshape({a.shape!r})"


def _runtime() -> str:
    text = resources.files("ntkdiagrams.generation").joinpath("runtime_source.py").read_text()
    start = text.index("# --- runtime begin ---")
    end = text.index("# --- runtime end ---")
    return text[start:end + len("# --- runtime end ---")]


def codegen(stats: Sequence[str] | str, activation: str | Activation, *, rules=None, target: str = "numpy",
            settings: Settings | None = None) -> str:
    """The source of a standalone module evaluating ``stats`` for ``activation`` (module docstring).

    ``stats``: tensor names of the rule file (a list, or one comma-separated string);
    ``rules``: a RuleSet, a built-in name or a path (default mlp); ``target``: "numpy" or "jax".
    InputError for an unknown target; UnsupportedError for an unknown statistic or what the
    generated runtime cannot integrate; ActivationError for an unknown activation."""
    if target not in TARGETS:
        raise InputError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    rules = resolve_rules(rules)
    act = activation if isinstance(activation, Activation) else parse_activation(activation)
    names = [s.strip() for s in stats.split(",")] if isinstance(stats, str) else list(stats)
    names = [s for s in names if s]
    if not names:
        raise InputError("no statistic given; name at least one (e.g. K,G1,V)")
    unknown = [s for s in names if s not in rules.tensors]
    if unknown:
        raise UnsupportedError(f"unknown or unsupported statistic(s) {unknown}; this rule file derives "
                               f"{sorted(rules.tensors)}")
    symbol_names = _check_names(rules)
    keys = list(rules.symbols)
    symbols = [rules.symbols[k] for k in keys]
    ratio = rules.width_ratio.ratio_name if rules.width_ratio is not None else None
    if ratio is not None:
        symbols += list(RATIO_SYMBOLS)
    kernel = rules.tensors[rules.gaussian_tensor()].cls
    needed = required_tensors(names, rules, settings)
    recs = {t: derive(t, rules, settings=settings) for t in needed}
    compiled = {t: CompiledRecursion(recs[t], act, symbols, "auto", "per-network", kernel) for t in needed}
    printer = _printer(target)
    plan = _Plan(act, target)
    gauss = rules.gaussian_tensor()
    used = set()
    body = []
    for t in needed:
        comp = compiled[t]
        used |= {(ratio if s in RATIO_SYMBOLS else s.name) for s in comp.used}
        shape = "(N,) * " + str(len(comp.labels))
        for kind, terms in (("initial", comp.initial_terms), ("step", comp.terms)):
            lines = []
            if kind == "step":
                lines.append(f"def _step_{t}(T, E, gram, h, N):")
                lines += ["    # " + ln for ln in recs[t].text().splitlines()]
            else:
                lines.append(f"def _initial_{t}(gram, h, N):")
                lines.append(f"    # {recs[t].target.func(1, *recs[t].labels)} = {recs[t].initial}")
            syms = sorted({symbol_names[s] for fn, _f in terms for s in fn.expr.free_symbols if s in symbol_names})
            lines += [f"    {local} = h[{key!r}]" for local, key in syms]
            lines.append("    ones = xp.ones(N)")
            lines.append(f"    out = xp.zeros({shape})")
            for fn, factors in terms:
                lines.append(_term_code(plan, comp, fn, factors, printer, symbol_names))
            lines.append("    return out")
            body += lines + ["", ""]
    kinked_any = any(plan.fns.kinked(i) for i in range(len(plan.fns.exprs)))
    funcs = []
    for fid, expr in enumerate(plan.fns.exprs):
        sharp = (_sharpness(expr, settings) if target == "numpy" and not plan.fns.kinked(fid) else None)
        funcs += _function_code(fid, expr, plan.fns.kinked(fid), plan.fns.polynomial_degree(fid), printer,
                                sharp)
    closure = _closure_constants(rules, act, names, settings, printer)
    return _assemble(rules, act, target, names, needed, gauss, keys + ([ratio] if ratio else []), used, plan, funcs,
                     body, printer, kinked_any,
                     closure)


def _closure_constants(rules, act, names, settings, printer) -> list[str]:
    """OPEN (the statistics a shortcut leaves open from the layer after its first nonzero use,
    docs/conventions.md §8) and SHORTCUT (its coefficient as a function of the layer's hyper-parameters),
    as the generated module's guard; empty lists for rule files without shortcuts or linear σ."""
    coeffs = shortcut_coefficients(rules)
    if not coeffs or sp.diff(act.expr, zsym, 2) == 0:
        return ["OPEN = []", "SHORTCUT = None"]
    opened = open_tensors(rules, act.odd)
    stats = [t for t in names if set(required_tensors([t], rules, settings)) & opened]
    if not stats:
        return ["OPEN = []", "SHORTCUT = None"]
    total = sp.Add(*[sp.Abs(c) for c in coeffs.values()])
    lam = f"lambda h: {printer.doprint(total.xreplace({x: sp.Symbol(f'h[{x.name!r}]') for x in total.free_symbols}))}"
    return [f"OPEN = {stats!r}  # need allow_incomplete=True beyond the layer after the first shortcut",
            f"SHORTCUT = {lam}"]


#: what the module header says about its Gaussian expectations, by target
_QUADRATURE_NOTE = {
    "numpy": ["Gaussian expectations: the methods of ntkdiagrams.evaluate (fast path, orthant moments,",
              "cone method; docs/gaussian.md), ported with its constants: the same numbers to rounding."],
    "jax": ["Gaussian expectations (fixed shapes for jax.jit): smooth sigma by trapezoid rules in the",
            "Cholesky coordinates, accurate to ~1e-8 while every coordinate scale s_j = max_i |L_ij| (at",
            "most the largest standard deviation sqrt(K_aa) of the tuple) stays within FIXED_MAX_SCALE",
            "(1.6, 1.1, 0.7, 0.4 for 1, 2, 3, 4 distinct inputs); beyond: ValueError when called eagerly,",
            "NaN entries under jax.jit; evaluate(..., max_scale=s) uses the node counts for scale s",
            "((2*ceil(57*s)+1)**m points per tuple).  ReLU family: closed-form orthant moments, no limit."],
}


def _assemble(rules, act, target, names, needed, gauss, keys, used, plan, funcs, body, printer, kinked_any,
              closure) -> str:
    defaults = {k: float(v) for k, v in default_values(rules).items()}
    head = [
        '"""Generated by ntkdiagrams codegen: do not edit.',
        "",
        f"engine:      ntkdiagrams {__version__}",
        f"rule file:   {rules.name} ({rules.path})",
        f"activation:  {act.name}  (sigma(z) = {act.expr})",
        f"target:      {target}",
        f"statistics:  {', '.join(names)}  (computed: {', '.join(needed)})",
        "",
        "evaluate(inputs, depth, **hyper) -> [{'layer': l, name: array, ...}, ...], as ntkdiagrams.evaluate;",
        f"hyper-parameters by the rule file's symbol names ({', '.join(keys)}), each a number or one value",
        "per layer 1..L (entry l-1 for the map that makes layer l); defaults: "
        + (", ".join(f"{k} = {v:g}" for k, v in defaults.items()) or "none") + ".",
        "",
    ] + _QUADRATURE_NOTE[target] + [
        '"""',
    ]
    sites = ["SITES = ["]
    for k, eq_terms, dist in plan.sites:
        eq = ", ".join(f"({fid}, lambda P00: {printer.doprint(c)})" for fid, c in eq_terms)
        if dist is None:
            ds = "None"
        else:
            ds = "[" + ", ".join(
                f"({g!r}, [" + ", ".join(f"({a}, {b}, lambda P00, P01, P11: {printer.doprint(c)})" for a, b, c in terms)
                + "])" for g, terms in dist) + "]"
        sites.append(f"    ({k}, [{eq}], {ds}),")
    sites.append("]")
    imports = ["import itertools", "import math", "", "import numpy as np"]
    if target == "jax":
        imports += ["import jax", "import jax.numpy as xp", "import jax.scipy.special",
                    "", 'jax.config.update("jax_enable_x64", True)']
    else:
        imports += ["import numpy as xp", "import numpy"]
        mods = sorted(m for m in printer.module_imports if m not in ("numpy",))
        imports += [f"import {m}" for m in mods]
    consts = [
        f"ADAPTIVE = {target == 'numpy'}",
        "FIXED_HALF = {1: 96, 2: 64, 3: 40, 4: 24}",
        f"STATISTICS = {list(names)!r}",
        f"NEEDED = {list(needed)!r}",
        f"GAUSSIAN = {gauss!r}",
        f"SYMBOLS = {list(keys)!r}",
        f"RATIO = {rules.width_ratio.ratio_name if rules.width_ratio is not None else None!r}"
        "  # the width ratio r: entry l-1 is r_l = n_l/n (L-1 values suffice)",
        f"USED = {sorted(used)!r}",
        f"DEFAULTS = {defaults!r}",
        "_F = {}",
        "_KINKED = {}",
        "_POLY = {}  # smooth polynomial functions: degree",
        "_SHARP = {}  # smooth functions smoother than tanh: their sharpness κ < 1 (the fast path's ladders)",
        f"_RANK = {plan.fns.ranks()!r}  # canonical slot order (the package's: by sympy srepr)",
        "RADIAL = {}",
        "SIMPLEX = {}",
        f"KINK_ARC_NODES = {KINK_ARC_NODES}",
        "CONE_RADIAL = {}",
        "RADIAL1 = {}",
        f"CONE_DEGREE = {dict(DEFAULT_DEGREE_BY_DIM)!r}",
        f"FIXED_MAX_SCALE = {FIXED_MAX_SCALE!r}  # JAX: largest coordinate scale of the fixed rules",
        "FAST = " + repr(_fast_constants()),
        "ORTHANT = " + repr({"MIN_EIGENVALUE": orthant.ORTHANT_MIN_EIGENVALUE,
                             "SINGULAR_EIGENVALUE": orthant.SINGULAR_EIGENVALUE,
                             "PANEL_NODES": orthant.PANEL_NODES}),
        "_PIECES = {}  # piecewise-polynomial functions: ascending coefficients of the branches z > 0, z < 0",
    ] + closure
    if kinked_any or any(plan.fns.polynomial_degree(i) is not None for i in range(len(plan.fns.exprs))):
        for n in range(1, RADIAL_NODES + 1):  # one variable: the package's exact rules of ⌊P/2⌋ + 1 nodes
            r, w = radial_rule(n, 0)
            consts.append(f"RADIAL1[{n}] = ({_array(r)}, {_array(w)})")
    if kinked_any:
        for p in range(4):
            r, w = radial_rule(RADIAL_NODES, p)
            consts.append(f"RADIAL[{p}] = ({_array(r)}, {_array(w)})")
        if target == "numpy":
            for m, n in SIMPLEX_NODES.items():
                t, w = simplex_rule(m - 1, n)
                consts.append(f"SIMPLEX[{m}] = ({_array(t)}, {_array(w)})")
    if target == "numpy" and not all(plan.fns.kinked(i) for i in range(len(plan.fns.exprs))):
        for m, (n_r, _n_a) in DEFAULT_DEGREE_BY_DIM.items():  # the cone method of smooth factors
            r, w = radial_rule(n_r, m - 1)
            consts.append(f"CONE_RADIAL[({n_r}, {m - 1})] = ({_array(r)}, {_array(w)})")
    blobs = ["BLOBS = ["] + [f"    {b!r}," for b in plan.blobs] + ["]"]
    step_table = ["STEPS = {" + ", ".join(f"{t!r}: _step_{t}" for t in needed) + "}",
                  "INITIAL = {" + ", ".join(f"{t!r}: _initial_{t}" for t in needed) + "}"]
    parts = ["\n".join(head), "\n".join(imports), "\n".join(consts), _runtime(), _LAYER_CODE,
             "# ---- the univariate functions of z (sympy's code printer) ----\n\n" + "\n".join(funcs),
             "\n".join(sites), "\n".join(blobs),
             "# ---- the recursions ----\n\n" + "\n".join(body), "\n".join(step_table), _EVALUATE_CODE]
    return "\n\n\n".join(p.rstrip() for p in parts) + "\n"


_LAYER_CODE = '''
class Layer:
    """The Gaussian expectations of one layer's kernel K, computed once and shared."""

    def __init__(self, K, max_scale=None):
        self.K = K
        self.max_scale = max_scale
        self.store = {}

    def gauss(self, fids):
        key = ("g", fids)
        if key not in self.store:
            self.store[key] = expectation_tensor(fids, self.K, self.max_scale)
        return self.store[key]

    def site(self, i):
        """(distinct, equal) derivative moments of site i (Hermite integration by parts)."""
        key = ("s", i)
        if key not in self.store:
            k, eq_terms, dist_terms = SITES[i]
            K = self.K
            N = K.shape[0]
            P00 = 1.0 / xp.diagonal(K)
            eq = sum(c(P00) * self.gauss((f,)) for f, c in eq_terms)
            dist = None
            if dist_terms is not None:
                U = np.indices((N, N))
                det = K[U[0], U[0]] * K[U[1], U[1]] - K[U[0], U[1]] ** 2
                ok = det > 1e-300
                det = xp.where(ok, det, 1.0)
                Q00, Q01, Q11 = K[U[1], U[1]] / det, -K[U[0], U[1]] / det, K[U[0], U[0]] / det
                dist = {}
                for g, terms in dist_terms:
                    total = xp.zeros((N, N))
                    for a, b, c in terms:
                        if _RANK[a] <= _RANK[b]:
                            E2 = self.gauss((a, b))
                        else:
                            E2 = self.gauss((b, a)).T
                        total = total + c(Q00, Q01, Q11) * E2
                    dist[g] = total
            self.store[key] = (dist, eq)
        return self.store[key]

    def blob(self, j, T):
        key = ("b", j)
        if key not in self.store:
            tensor, args, sites, axes = BLOBS[j]
            moments = [self.site(sid) for _labels, _legs, sid in sites]
            self.store[key] = contract_blob(T[tensor], args, [(lab, legs) for lab, legs, _s in sites],
                                            self.K, moments, axes)
        return self.store[key]
'''

_EVALUATE_CODE = '''
def _hyper(hyper, depth):
    unknown = sorted(set(hyper) - set(SYMBOLS))
    if unknown:
        raise TypeError(f"unknown hyper-parameter(s) {unknown}; the names are {SYMBOLS}")
    out = {}
    for name in SYMBOLS:
        v = hyper.get(name, DEFAULTS.get(name))
        if v is None:
            if name in USED:
                raise TypeError(f"no value for hyper-parameter {name!r} (no default); give {name}=...")
            continue
        v = xp.asarray(v, dtype=float)
        if name == RATIO and v.ndim == 1 and v.shape[0] == depth - 1 and depth > 2:
            v = xp.concatenate([v, v[-1:]])  # r_1 ... r_{L-1}: r_L enters nothing
        if v.ndim > 1 or (v.ndim == 1 and v.shape[0] != depth):
            raise ValueError(f"{name}: give one value or one per layer ({depth}); got shape {v.shape}")
        out[name] = v
    return out


def _at(h, i):
    """The hyper-parameters of the map that makes layer i + 1, with the width ratios r_{i+1}, r_i
    (r_0 = 1) under "(r_ell)", "(r_ell_minus_1)"."""
    out = {k: (v if v.ndim == 0 else v[i]) for k, v in h.items()}
    if RATIO is not None and RATIO in h:
        r = h[RATIO]
        out["(r_ell)"] = r if r.ndim == 0 else r[max(i - 1, 0)]
        out["(r_ell_minus_1)"] = (r if r.ndim == 0 else r[i - 2]) if i >= 2 else 1.0
    return out


def _nonzero(v):
    try:
        return bool(v != 0)
    except Exception:  # a traced value under jax.jit: unknown, so counted as nonzero
        return True


def _check_closure(h, depth):
    """ValueError when an OPEN statistic is asked beyond the layer after the first nonzero shortcut
    (ntkdiagrams: docs/conventions.md section 8, the residual MLP's single-neuron cumulants)."""
    if not OPEN:
        return
    for ell in range(2, depth):
        if _nonzero(SHORTCUT(_at(h, ell - 1))):
            raise ValueError(f"{', '.join(OPEN)}: with the shortcut these lack first-order terms from layer "
                             f"{ell + 1} on (ntkdiagrams docs/conventions.md section 8); ask for depth <= {ell} "
                             "or pass allow_incomplete=True")


def evaluate(inputs, depth, *, allow_incomplete=False, max_scale=None, **hyper):
    """Per-layer statistics [{"layer": l, name: array over the inputs, ...}, ...] for layers 1..depth.

    inputs: (N, n0) array of the inputs x_alpha; hyper: the rule file's symbols (module docstring);
    allow_incomplete: compute the OPEN statistics beyond the layer where they close (no warning);
    max_scale: JAX target, smooth activations: the largest Cholesky-coordinate scale the fixed rules
    must cover (a number, static under jit; default FIXED_MAX_SCALE by the number of distinct
    inputs); the numpy target chooses its rules per tuple and ignores it."""
    x = xp.asarray(inputs, dtype=float)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"inputs must be an (N, n0) array; got shape {x.shape}")
    if isinstance(depth, bool) or int(depth) != depth or depth < 1:
        raise ValueError(f"depth must be an integer >= 1; got {depth!r}")
    depth = int(depth)
    h = _hyper(hyper, depth)
    if not allow_incomplete:
        _check_closure(h, depth)
    N, n0 = x.shape
    gram = x @ x.T / n0
    hl = _at(h, 0)
    T = {t: INITIAL[t](gram, hl, N) for t in NEEDED}
    layers = [{"layer": 1, **{t: T[t] for t in STATISTICS}}]
    for ell in range(1, depth):
        K = T[GAUSSIAN]
        E = Layer(0.5 * (K + K.T), max_scale)
        hl = _at(h, ell)
        T = {t: STEPS[t](T, E, gram, hl, N) for t in NEEDED}
        layers.append({"layer": ell + 1, **{t: T[t] for t in STATISTICS}})
    return layers
'''
