"""Single-input (diagonal) recursions in closed form, and proofs by induction that they vanish.

On the diagonal (every input label the same α) and for a piecewise-linear activation
σ(z) = a₊ z (z > 0), a₋ z (z < 0) — the scale-invariant class of PDLT §5 — every Gaussian
expectation of a recursion is a one-dimensional integral of a piecewise polynomial:

* a blob contraction Σ_β T_{…β…} ⟨∂_β F⟩ collapses to T_{α…α} ⟨d^k F̃/dy^k⟩ with F̃(y) = F(y,…,y),
  and integration by parts turns it into ⟨F̃(y) He_k(y/√K)⟩ / K^{k/2} (no derivative of σ, so no
  delta function ever appears);
* ⟨F̃⟩ = ∫_0^∞ F̃₊ φ_K + ∫_{-∞}^0 F̃₋ φ_K with F̃± the polynomial branches, done exactly by sympy.

:func:`diagonal_recursion` returns the diagonal recursion as an expression in the diagonal layer-ℓ
tensors with exact coefficients.  :func:`vanishes_on_diagonal` then tries to prove that a tensor
vanishes at every layer: collect the tensors its diagonal recursion needs (with non-zero
coefficient), close the set, and check that every recursion in it is linear and homogeneous in
the set with zero first-layer values.  Then all of them are zero by induction over layers.  For
ReLU this proves Θ1_αα = 0 (the theorem of arXiv 2508.11522) and G1_αα = 0 from the rule file.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..numerics.activations import Activation
from ..numerics.activations import z as zsym
from ..language.algebra import (ActivationDerivative, BlobSum, GaussianExpectation, InputGram, LayerTensor, Z,
                      ell, integrand_labels)
from ..errors import UnsupportedError
from ..engine.derivation import derive
from ..engine.recursion import Recursion

alpha = sp.Symbol("alpha")
y = sp.Symbol("y", real=True)
Kd = sp.Symbol("K_aa", positive=True)   # K^{(ℓ)}_{αα}


def _branches(act: Activation):
    if act.scale_invariant is None:
        raise UnsupportedError(f"diagonal closed forms need a scale-invariant activation "
                               f"(a+ z for z > 0, a- z for z < 0); {act.name!r} is not")
    ap, am = act.scale_invariant
    return ap, am


def _collapsed(f: sp.Expr, act: Activation, sign: int) -> sp.Expr:
    """F̃ on one branch: every σ^{(k)}(z_α) replaced by the k-th derivative of a± y."""
    ap, am = _branches(act)
    slope = ap if sign > 0 else am
    reps = {}
    for ad in f.atoms(ActivationDerivative):
        k = int(ad.args[0])
        reps[ad] = slope * y if k == 0 else (slope if k == 1 else sp.Integer(0))
    return sp.expand(f.xreplace(reps))


def _gauss_1d(poly_pos: sp.Expr, poly_neg: sp.Expr) -> sp.Expr:
    phi = sp.exp(-y ** 2 / (2 * Kd)) / sp.sqrt(2 * sp.pi * Kd)
    return sp.simplify(sp.integrate(poly_pos * phi, (y, 0, sp.oo)) + sp.integrate(poly_neg * phi, (y, -sp.oo, 0)))


def _hermite(k: int) -> sp.Expr:
    """h_k(y) with ⟨f^{(k)}⟩_K = ⟨f h_k⟩_K for y ~ N(0, K)."""
    phi = sp.exp(-y ** 2 / (2 * Kd))
    return sp.simplify((-1) ** k * sp.diff(phi, y, k) / phi)


def _expect(f: sp.Expr, act: Activation, k: int = 0) -> sp.Expr:
    h = _hermite(k)
    return _gauss_1d(_collapsed(f, act, +1) * h, _collapsed(f, act, -1) * h)


@dataclass
class DiagonalRecursion:
    tensor: str
    rhs: sp.Expr          # in symbols T_aa (the diagonal layer-ℓ tensors), K_aa and hyper-parameters
    initial: sp.Expr      # the first-layer value on the diagonal
    symbols: dict         # tensor name -> its diagonal symbol


def _diag_symbol(name: str) -> sp.Symbol:
    return sp.Symbol(f"{name}_aa")


def diagonal_recursion(tensor: str, act: Activation, rules=None) -> DiagonalRecursion:
    """The recursion of ``tensor`` on one input, with exact coefficients for a scale-invariant σ."""
    rec: Recursion = derive(tensor, rules)
    collapse = {a: alpha for a in rec.labels}
    expr = rec.compact.xreplace(collapse)
    syms = {}

    def tens(t: LayerTensor):
        syms[t.tensor_name] = _diag_symbol(t.tensor_name)
        if t.tensor_name == (rec.rules.gaussian_tensor() if rec.rules else "K"):
            return Kd
        return syms[t.tensor_name]

    def blob(b: BlobSum):
        out = tens(b.tensor.func(*b.tensor.args))
        for pe in b.sites:
            f, _layer, *betas = pe.args
            if len(integrand_labels(f)) > 1:
                raise UnsupportedError("diagonal form: a site with several inputs after collapsing")
            out *= _expect(f, act, len(betas))
        return out

    def gauss(g: GaussianExpectation):
        return _expect(g.integrand, act, 0)

    expr = expr.replace(lambda e: isinstance(e, BlobSum), blob)
    expr = expr.replace(lambda e: isinstance(e, GaussianExpectation), gauss)
    expr = expr.replace(lambda e: isinstance(e, LayerTensor), tens)
    initial = rec.initial.xreplace(collapse)
    initial = initial.replace(lambda e: isinstance(e, InputGram), lambda e: sp.Symbol("xx_aa", positive=True))
    return DiagonalRecursion(tensor, sp.simplify(sp.expand(expr)), sp.simplify(initial), syms)


@dataclass
class DiagonalProof:
    tensor: str
    vanishes: bool
    recursions: dict      # tensor -> DiagonalRecursion of the closed set
    reason: str

    def text(self) -> str:
        lines = []
        for name, r in self.recursions.items():
            lines.append(f"{name}^(l+1)_aa = {r.rhs}      ({name}^(1)_aa = {r.initial})")
        lines.append(self.reason)
        return "\n".join(lines)


def vanishes_on_diagonal(tensor: str, act: Activation, rules=None) -> DiagonalProof:
    """Try to prove T_αα = 0 at every layer by induction (see module docstring)."""
    todo, recs = [tensor], {}
    while todo:
        t = todo.pop()
        if t in recs:
            continue
        r = diagonal_recursion(t, act, rules)
        recs[t] = r
        for name, s in r.symbols.items():
            if r.rhs.has(s) and name not in recs:
                todo.append(name)
    closed = set(recs)
    for name, r in recs.items():
        if sp.simplify(r.initial) != 0:
            return DiagonalProof(tensor, False, recs, f"not proven: {name}^(1)_aa = {r.initial} is not zero")
        poly = sp.Poly(sp.expand(r.rhs), *[_diag_symbol(t) for t in sorted(closed)])
        for monom, _c in poly.terms():
            if sum(monom) != 1:
                return DiagonalProof(tensor, False, recs,
                                     f"not proven: the recursion of {name} is not linear and homogeneous "
                                     f"in {sorted(closed)}")
    return DiagonalProof(tensor, True, recs,
                         f"{tensor}_aa = 0 at every layer: the diagonal recursions of {sorted(closed)} are "
                         "linear and homogeneous in these tensors and all vanish at layer 1 (induction)")
