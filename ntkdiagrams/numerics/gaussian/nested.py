"""The nested rule of the fast path, evaluated with numpy arrays over all points of a chunk.

For tuples with Cholesky factor L (z = L u, u ~ N(0, I)) and one rule per outer coordinate
(:mod:`.ladder`), :func:`nested_sum` computes

    E_t = Σ_{i₀} w₀ F₀(z₀) Σ_{i₁} w₁ F₁(z₁) … Σ_{i_J} w_J F_J(z_J) · G(μ_{J+1}, L_{J+1,J+1}),

    z_j = μ_j + L_jj u_{i_j},    μ_j = Σ_{k<j} L_jk u_{i_k},

level by level: each level multiplies the number of points by its rule's size, and carries the
weights and the running means μ of the later variables.  A split-rule level takes per parent
point the row of the split c = −μ_j/L_jj (rounded to the grid of :mod:`.rules`), so that z_j = 0
falls on the rule's end point.  G is read from the table of :mod:`.table` (m ≥ 3), or absent
(m = 2: every coordinate is an outer level).

Factors with an exponential form f = R(e^{κz}) (:mod:`.factors`) are evaluated by the addition
theorem f(α(μ + s u)) = R(e^{κα μ} · e^{κα s u}): the exponentials are taken per tuple and per
parent point, never per point (tanh costs about twice exp per float, and a level has k or 2n
points per parent).  Guarded by |κα z|·d ≤ EXPO_MAX_EXPONENT; otherwise, or for other factors,
f is evaluated directly.  Both give the same numbers to rounding.
"""
from __future__ import annotations

import numpy as np

from .blocks import Block
from .context import Quadrature
from .factors import EXPO_MAX_EXPONENT, Factor
from .rules import split_index
from .table import table_lookup

__all__ = ["block_on_nodes", "block_on_split", "expo_scale", "nested_sum"]


def expo_scale(f: Factor, a: np.ndarray, mu: np.ndarray, s: np.ndarray, u: np.ndarray,
               quad: Quadrature):
    """κα (T, 1) for evaluating f(α(μ + s u)) as R(e^{κα μ} e^{κα s u}), or None when f has
    no exponential form, E^d could overflow (|κα z|·d > EXPO_MAX_EXPONENT) or
    ``quad.addition_theorem`` is off."""
    if f.expo is None or not quad.addition_theorem:
        return None
    ka = f.expo.kappa * a[:, None]
    reach = np.max(np.abs(ka) * (np.max(np.abs(mu), axis=1, keepdims=True) + np.abs(s) * np.max(np.abs(u))))
    return ka if reach * f.expo.degree <= EXPO_MAX_EXPONENT else None


def block_on_nodes(block: Block, mu: np.ndarray, s: np.ndarray, u: np.ndarray, sel,
                   quad: Quadrature) -> np.ndarray:
    """Block j on a Gauss–Hermite level: Π_members f(α (μ + s u_k)) as (T, k, P) (node-major:
    numpy broadcasts fast along the long axis), for the running means μ (T, P), the slopes
    s (T, 1) and the level's nodes u (k,).

    A factor with an exponential form f = R(e^{κz}) is evaluated by the addition theorem
    R(e^{κα μ} e^{κα s u_k}): P + k exponentials per tuple instead of P·k tanh's."""
    out = None
    for f, a in block.members:
        ka = expo_scale(f, a[sel], mu, s, u, quad)
        if ka is not None:
            quad.count("addition_nodes", 1)
            v = f.expo.R(np.exp(ka * mu)[:, None, :] * np.exp((ka * s) * u)[:, :, None])
        else:
            v = Block([(f, a)]).evaluate_smooth(mu[:, None, :] + (s * u)[:, :, None], sel)
        out = v if out is None else out * v
    return out


def block_on_split(block: Block, mu: np.ndarray, s: np.ndarray, U: np.ndarray, g: np.ndarray,
                   sel, quad: Quadrature) -> np.ndarray | None:
    """Block j on a split-rule level, by the addition theorem of its exponential forms:
    Π f(α(μ + s U[g])) = Π R(e^{κα μ} · e^{κα s U[g]}) with e^{κα s U} tabulated per tuple
    over the rows of the rule bank (G × 2n exponentials per tuple instead of P × 2n tanh's).
    None when a factor has no exponential form or E^d could overflow."""
    T = mu.shape[0]
    G = U.shape[0]
    out = None
    for f, a in block.members:
        ka = expo_scale(f, a[sel], mu, s, U, quad)
        if ka is None:
            return None
        tab = np.exp((ka * s)[:, :, None] * U[None]).reshape(T * G, -1)  # (T·G, 2n)
        e = np.take(tab, g + (np.arange(T) * G)[:, None], axis=0)  # (T, P, 2n)
        e *= np.exp(ka * mu)[..., None]
        v = f.expo.R(e)
        out = v if out is None else out * v
    quad.count("addition_split", 1)
    return out


def nested_sum(blocks: list[Block], L: np.ndarray, sel, rules, tab, M: float, h: float,
               quad: Quadrature) -> np.ndarray:
    """Σ over the nested rules of Π_j F_j(z_j) (outer levels), times G(μ_last, s_last) read
    from the table (``tab``, ``M``) of spacing ``h`` when ``tab`` is given.  L (T, m, m): Cholesky factors of the chunk's tuples;
    ``sel``: their rows in the blocks' α arrays; ``rules``: (U, W) per outer level.

    The mean of the tabulated variable is carried in table units x = (μ + M)/h, so that
    the lookup needs no rescaling; array passes over the innermost level are what costs."""
    T, m = L.shape[0], L.shape[1]
    outer = len(rules)
    wt = np.ones((T, 1))
    Mu = [np.zeros((T, 1)) for _ in range(m)]
    Lx = L
    if tab is not None:
        Mu[m - 1] += M / h
        Lx = L.copy()
        Lx[:, m - 1, :] /= h
    for j in range(outer):
        s = L[:, j, j][:, None]
        if rules[j][0].shape[0] == 1:  # Gauss–Hermite: the same k nodes at every point
            u, w = rules[j][0][0], rules[j][1][0]
            f = block_on_nodes(blocks[j], Mu[j], s, u, sel, quad)  # (T, k, P)
            f *= wt[:, None, :]
            f *= w[None, :, None]
            wt = f.reshape(T, -1)
            for i in range(j + 1, m):
                Mu[i] = (Mu[i][:, None, :] + (Lx[:, i, j][:, None] * u)[:, :, None]).reshape(T, -1)
        else:  # split rule: nodes depend on the point through the split c = -μ_j/s_j
            with np.errstate(divide="ignore", invalid="ignore"):
                c = np.where(s > 0, -Mu[j] / np.where(s > 0, s, 1.0), 0.0)
            g = split_index(c)
            U, W = rules[j]
            u, w = U[g], W[g]  # (T, P, 2n)
            f = None
            if g.shape[1] > 2 * U.shape[0]:  # many points per tuple: tabulate e^{κ s u} per tuple
                f = block_on_split(blocks[j], Mu[j], s, U, g, sel, quad)
            if f is None:
                f = blocks[j].evaluate_smooth(Mu[j][..., None] + s[..., None] * u, sel)
            f *= w
            f *= wt[..., None]
            wt = f.reshape(T, -1)
            for i in range(j + 1, m):
                Mu[i] = (Mu[i][..., None] + Lx[:, i, j][:, None, None] * u).reshape(T, -1)
    if tab is None:
        return wt.sum(axis=1)
    g = table_lookup(tab, M, Mu[m - 1], L, m, h)
    return np.einsum("tp,tp->t", wt, g)
