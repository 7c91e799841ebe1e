"""Recursions: the statistics of layer ℓ+1 as closed-form expressions in those of layer ℓ.

A :class:`Recursion` (made by :func:`ntkdiagrams.engine.derivation.derive`) holds

* the target, e.g. ``V^{(ℓ+1)}_{α1α2α3α4}``, at its order in 1/n;
* the right-hand side, a sympy expression in Gaussian expectations ⟨…⟩_{K^{(ℓ)}} and the
  layer-ℓ tensors, valid for arbitrary (also coinciding) inputs α, explicit and compact
  (blob contractions kept as Σ_β sums);
* the first-layer value;
* the diagrams that contribute, each with its multiplicity, power of n and value, so that
  Σ multiplicity × value = rhs;

and prints them as text and LaTeX.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from ..language.algebra import LayerTensor, WidthRatio
from ..language.rulefile import RuleSet
from .diagrams import merge_isomorphic


@dataclass
class Recursion:
    """T^{(ℓ+1)}(α…) = rhs(layer-ℓ statistics), with T^{(1)} = initial."""

    tensor: str
    statistic: str
    order: int
    labels: tuple
    target: sp.Expr
    rhs: sp.Expr
    initial: sp.Expr
    compact: sp.Expr = None     # rhs with blob contractions kept as Σ_β sums (BlobSum)
    diagrams: list = field(default_factory=list, repr=False)
    pattern: dict = field(default_factory=dict)
    rules: RuleSet | None = field(default=None, repr=False)

    def text(self, compact: bool = True) -> str:
        """A readable text form, one term per line: target = rhs, and the first-layer value."""
        t1 = self.target.func(1, *self.labels)
        rhs = self.compact if (compact and self.compact is not None) else self.rhs
        terms = [_str_term(t) for t in sp.Add.make_args(rhs)]
        body = "\n".join("    " + t if k == 0 else "  - " + t[1:] if t.startswith("-") else "  + " + t
                         for k, t in enumerate(terms))
        return f"{self.target} =\n{body}\n{t1} = {self.initial}"

    def latex(self, initial: bool = True, compact: bool = True) -> str:
        """Publication-ready LaTeX (an ``align`` environment body).

        ``compact`` keeps blob contractions as Σ_β sums (PDLT's form); otherwise every
        derivative is resolved on the input labels."""
        rhs = self.compact if (compact and self.compact is not None) else self.rhs
        lines = [sp.latex(self.target) + " &= " + _latex_sum(rhs)]
        if initial:
            lines.append(sp.latex(self.target.func(1, *self.labels)) + " &= " + sp.latex(self.initial))
        return " \\\\\n".join(lines)

    def diagram_table(self, labeled: bool = False, values: bool = False, compact: bool = True) -> str:
        """The contributing diagrams, one line each: multiplicity, power of n, description.

        Grouped into topologies unless ``labeled``.  ``values``: the diagrams as derived (labeled,
        merged only where their values agree), each line ending with its value (``compact``: blob
        contractions as Σ_β sums), so that Σ multiplicity × value is the right-hand side."""
        if values:
            return "\n".join(f"  D{k + 1}: {d.describe()}  =  {_str_value(self._value(d, compact))}"
                             for k, d in enumerate(self.diagrams))
        ds = merge_isomorphic([d.copy() for d in self.diagrams], labeled=labeled)
        return "\n".join(f"  D{k + 1}: {d.describe()}" for k, d in enumerate(ds))

    def diagram_latex(self, compact: bool = True) -> str:
        """One LaTeX line per diagram (an ``align`` body), ``D_{k} &= value && (\\times m,\\ n^{p})``:
        the right-hand side is Σ_k m_k D_k."""
        lines = []
        for k, d in enumerate(self.diagrams, 1):
            lines.append(rf"D_{{{k}}} &= {_latex_sum(self._value(d, compact))} && (\times {d.multiplicity},\ n^{{{d.power}}})"
                         + (" \\\\" if k < len(self.diagrams) else ""))
        return "\n".join(lines)

    def diagram_sum(self, compact: bool = False) -> sp.Expr:
        """Σ multiplicity × value over the diagrams (equal to ``rhs``, or ``compact``)."""
        return sp.expand(sp.Add(*[d.multiplicity * self._value(d, compact) for d in self.diagrams]))

    @staticmethod
    def _value(d, compact: bool) -> sp.Expr:
        return d.compact if (compact and d.compact is not None) else d.value

    @property
    def layer_tensors(self) -> set:
        """Names of the layer-ℓ tensors the right-hand side uses."""
        return {a.tensor_name for a in self.rhs.atoms(LayerTensor)}


def _objects(term: sp.Expr) -> list:
    """The factors printed after the coefficient: every function but the width ratios r_ℓ, which
    stay in front with the numbers (C_W r_ℓ / r_{ℓ−1} Σ …)."""
    return [a for a in term.atoms(sp.Function) if not isinstance(a, WidthRatio)]


def _latex_term(term: sp.Expr) -> str:
    """A term as 'coefficient · rest', so rational prefactors stay in front (\\frac{C_W}{4} Σ …)."""
    c, rest = term.as_independent(*_objects(term), as_Add=False)
    if rest == 1:
        return sp.latex(term)
    if c == 1:
        return sp.latex(rest)
    if c == -1:
        return "- " + sp.latex(rest)
    return sp.latex(c) + " " + sp.latex(rest)


def _str_term(term: sp.Expr) -> str:
    c, rest = term.as_independent(*_objects(term), as_Add=False)
    if rest == 1 or c == 1:
        return str(term)
    if c == -1:
        return "-" + str(rest)
    return f"{c} * {rest}" if not str(c).startswith("-") else f"-{-c} * {rest}"


def _latex_sum(expr: sp.Expr, per_line: int = 3) -> str:
    terms = sp.Add.make_args(expr)
    parts = [_latex_term(t) for t in terms]
    out = ""
    for k, p in enumerate(parts):
        if k and k % per_line == 0:
            out += " \\nonumber\\\\\n &\\quad "
        if k == 0:
            out += p
        else:
            out += (" " + p) if p.startswith("-") else (" + " + p)
    return out


def _str_value(expr: sp.Expr) -> str:
    """A value on one line, terms joined by + / −."""
    terms = [_str_term(t) for t in sp.Add.make_args(expr)]
    out = ""
    for k, t in enumerate(terms):
        if k == 0:
            out = t
        elif t.startswith("-"):
            out += " - " + t[1:]
        else:
            out += " + " + t
    return out
