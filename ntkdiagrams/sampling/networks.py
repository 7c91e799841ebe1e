"""Exact per-network objects of an ensemble of finite-width networks (docs/conventions.md §1–§2, §8).

This module is the numerical ground truth of the package and shares no code with the
diagram engine.  For an ensemble of C networks (numpy float64, vectorised over the leading
axis) it computes, for every layer ℓ and the two neurons i ∈ {0, 1} of that layer,

* the preactivations ``z[c, i, α]``,
* the NTK ``H[c, i1, i2, α1, α2]``,
* the dNTK ``dH[c, i0, i1, i2, α0, α1, α2]``,
* the ddNTKs ``ddIH[c, i0, i1, i2, i3, α0..α3]`` and ``ddIIH[c, i1, i2, i3, i4, α1..α4]``,

with the definitions of docs/conventions.md §2 (sums over all parameters of layers 1..ℓ weighted by
the diagonal learning rates λ_b and λ_W/n_{k-1}).

The networks are those the interpreter of rule files builds
(:mod:`ntkdiagrams.sampling.interpreter`): every layer is

    z^(k) = ξ_k z^(k-1) + b^(k) + W^(k) σ(z^(k-1))      (z^(0) ↦ the data x, no σ, no shortcut)

with a bias or none, per-layer widths n_k, per-layer per-entry learning rates η_b^(k), η_W^(k)
(λ_b and λ_W/n_{k-1} in the MLP) and an optional shortcut weight ξ_k (the residual MLP of
docs/conventions.md §8); the plain MLP has ξ_k absent and biases everywhere.

How (no parameter Hessians are ever formed)
-------------------------------------------
Write g_a = ∇_θ z^(ℓ)_{i_a;α_a} for a = (i_a, α_a) and u_a = λ∘g_a.  Then

* H_{i1i2;α1α2}   = D_{u_a} z_{i2;α2}                     (a = (i1, α1)),
* dH_{i0i1i2}     = D_{u_1} D_{u_2} z_{i0},
* ddIH_{i0i1i2i3} = D_{u_1} D_{u_2} D_{u_3} z_{i0},
* ddIIH_{i1i2i3i4} = D_w D_{u_3} z_{i1} with w = D_{u_4} u_2 = λ∘(Hess z_{i2} · u_4),

where D_v is the directional derivative along the (fixed) parameter vector v.  Because the
learning rates are diagonal, the layer-k block of u_a is rank one: δb^(k) = λ_b J^(k)_a,
δW^(k) = (λ_W/n_{k-1}) J^(k)_a ⊗ σ(z^(k-1)_{α_a}), with J^(k)_a = ∂z^(ℓ)_{i_a;α_a}/∂z^(k)
the backward Jacobian; w is rank two per layer.  Directional derivatives are propagated
forward through z^(k+1) = b + W σ(z^(k)) with Faà di Bruno, so one target layer costs a
handful of batched (C, n, n) @ (C, n, ·) matrix products per layer.

The shortcut is linear in z and carries no parameter, so it adds ξ times the previous layer's
value to every propagated object: J^(k) = σ'(z^(k)) ⊙ W^(k+1)ᵀ J^(k+1) + ξ_{k+1} J^(k+1),
D J^(k) gets ξ_{k+1} D J^(k+1), and every forward jet D…D z^(k+1) gets ξ_{k+1} D…D z^(k).

Dirac deltas
------------
Piecewise-linear activations (ReLU, leaky ReLU) have σ'' ∝ δ(z).  A sampled preactivation
is never exactly 0, so for every sampled network the pointwise value of any term carrying a
δ is 0 almost surely; derivatives σ^(k) are therefore evaluated with every ``DiracDelta``
replaced by 0 (other terms of σ^(k) are kept).  The Monte Carlo dNTK/ddNTK of ReLU networks
are thus the expectations of the almost-sure per-network values.  (This need not equal a
theory that keeps ⟨δ(z) f⟩ terms, which corresponds to the ε → 0 limit of smoothed
activations.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import sympy as sp

from ..numerics.activations import Activation, lambdify_z, z as _z
from ..errors import InputError

__all__ = ["Ensemble", "activation_derivatives", "draw_ensemble", "draw_parameters", "forward",
           "layer_objects", "layer_widths", "parameter_count"]


def activation_derivatives(act: Activation, order: int) -> list[Callable[[np.ndarray], np.ndarray]]:
    """numpy callables for σ, σ', …, σ^(order); Dirac deltas are replaced by 0 (see module doc)."""
    fns = []
    for k in range(order + 1):
        d = act.derivative(k)
        if d.has(sp.DiracDelta):
            d = d.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)
            d = sp.simplify(d)
        if d == 0:
            fns.append(lambda x: np.zeros_like(x))
        elif not d.free_symbols:
            c = float(d)
            fns.append(lambda x, c=c: np.full_like(x, c))
        else:
            fns.append(lambdify_z(d))
    return fns


@dataclass
class Ensemble:
    """C networks with explicit parameters.

    ``W[k]`` has shape (C, n_{k+1}, n_k) and ``b[k]`` shape (C, n_{k+1}) for the layer k+1
    (0-based list, layer 1 first; ``b[k] = None``: layer k+1 has no bias); ``x`` is the (N, n0)
    data set.  Per-entry learning rates are λ_b for biases and λ_W/n_{k} for the weights of
    layer k+1 (fan-in n_k), unless ``bias_rates`` / ``weight_rates`` give them per layer.
    ``xi[k]``: the shortcut weight of layer k+1, z^(k+1) += ξ z^(k) (None, or a None entry: no
    shortcut; layer 1 has none).
    """

    W: list
    b: list
    x: np.ndarray
    lb: float = 1.0
    lw: float = 1.0
    xi: Sequence | None = None
    weight_rates: Sequence | None = None
    bias_rates: Sequence | None = None

    @property
    def size(self) -> int:
        return self.W[0].shape[0]

    @property
    def depth(self) -> int:
        return len(self.W)

    def weight_rate(self, k: int) -> float:
        """Per-entry learning rate of W^(k+1) (0-based k): λ_W / n_k unless given."""
        if self.weight_rates is not None:
            return self.weight_rates[k]
        return self.lw / self.W[k].shape[2]

    def bias_rate(self, k: int) -> float:
        """Per-entry learning rate of b^(k+1) (0-based k): λ_b unless given."""
        if self.bias_rates is not None:
            return self.bias_rates[k]
        return self.lb

    def shortcut(self, k: int):
        """ξ of layer k+1 (0-based k), or None."""
        if self.xi is None:
            return None
        return self.xi[k]


def layer_widths(n0: int, width: int, depth: int, out_width: int = 2) -> list[int]:
    """[n0, n, …, n, out_width]: hidden widths n, output layer of width out_width."""
    return [n0] + [width] * (depth - 1) + [out_width]


def parameter_count(widths: Sequence[int], biases: Sequence[bool] | None = None) -> int:
    """Number of parameters; ``biases[k]``: whether layer k+1 has a bias (default: all)."""
    return sum(widths[k + 1] * widths[k] + (widths[k + 1] if biases is None or biases[k] else 0)
               for k in range(len(widths) - 1))


def draw_parameters(rng: np.random.Generator, count: int, widths: Sequence[int],
                    weight_std: Sequence[float], bias_std: Sequence) -> tuple[list, list]:
    """Draw the weights and biases of ``count`` networks: W^(k+1) ~ weight_std[k] · N(0, 1),
    b^(k+1) ~ bias_std[k] · N(0, 1) (``bias_std[k] = None``: no bias).  All standard normals of
    one network are drawn contiguously (one (count, P) block, per layer the weights then the
    bias), so the networks drawn from a stream do not depend on how the stream is cut into chunks."""
    P = parameter_count(widths, [s is not None for s in bias_std])
    flat = rng.standard_normal((count, P))
    W, b, pos = [], [], 0
    for k in range(len(widths) - 1):
        fan_in, fan_out = widths[k], widths[k + 1]
        w = flat[:, pos:pos + fan_out * fan_in].reshape(count, fan_out, fan_in)
        pos += fan_out * fan_in
        W.append(w * weight_std[k])
        if bias_std[k] is None:
            b.append(None)
            continue
        bb = flat[:, pos:pos + fan_out]
        pos += fan_out
        b.append(bb * bias_std[k])
    return W, b


def draw_ensemble(rng: np.random.Generator, count: int, widths: Sequence[int], x: np.ndarray,
                  cb: float, cw: float, lb: float, lw: float) -> Ensemble:
    """Draw ``count`` MLPs (C_W/n_k weight variance, C_b bias variance, every layer); see
    :func:`draw_parameters`.  Networks of a rule file: :mod:`ntkdiagrams.sampling.interpreter`."""
    L = len(widths) - 1
    W, b = draw_parameters(rng, count, widths, [np.sqrt(cw / widths[k]) for k in range(L)],
                           [np.sqrt(cb)] * L)
    return Ensemble(W=W, b=b, x=np.asarray(x, dtype=float), lb=float(lb), lw=float(lw))


@dataclass
class Forward:
    """Forward pass: ``z[k]`` (C, n_k, N) for k = 1..L (index 0 unused = None) and
    ``s[k][m]`` = σ^(m)(z^(k)); ``s[0][0]`` is the input, broadcast as (1, n0, N)."""

    z: list
    s: list


def forward(ens: Ensemble, derivs: list) -> Forward:
    """Preactivations of every layer and σ^(m) of the hidden layers up to len(derivs)-1."""
    x = ens.x.T[None]  # (1, n0, N)
    zs: list = [None]
    ss: list = [[x]]
    prev = x
    for k in range(ens.depth):
        zk = np.matmul(ens.W[k], prev)
        if ens.b[k] is not None:
            zk = zk + ens.b[k][:, :, None]
        xi = ens.shortcut(k)
        if xi is not None:
            if k == 0:
                raise InputError("layer 1 acts on the data and has no shortcut")
            zk = zk + xi * zs[k][:, :zk.shape[1]]
        zs.append(zk)
        if k < ens.depth - 1:
            sk = [f(zk) for f in derivs]
            ss.append(sk)
            prev = sk[0]
        else:
            ss.append(None)
    return Forward(z=zs, s=ss)


def _mm(W: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Batched W (C, p, q) @ T (C, q, ...) -> (C, p, ...)."""
    C = max(W.shape[0], T.shape[0])
    out = np.matmul(W, T.reshape(T.shape[0], T.shape[1], -1))
    return out.reshape((C, W.shape[1]) + T.shape[2:])


def _mmT(A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Σ_m A[c, m, a] T[c, m, ...] -> (C, a, ...)."""
    C = max(A.shape[0], T.shape[0])
    out = np.matmul(np.swapaxes(A, 1, 2), T.reshape(T.shape[0], T.shape[1], -1))
    return out.reshape((C, A.shape[2]) + T.shape[2:])


def layer_objects(ens: Ensemble, fw: Forward, ell: int, *, H: bool = False, dH: bool = False,
                  ddIH: bool = False, ddIIH: bool = False, ddIH_neurons=None) -> dict:
    """Objects of layer ``ell`` (1-based) for its neurons 0 and 1.

    Returns a dict with ``z`` (C, 2, N) and, as requested, ``H`` (C, 2, 2, N, N),
    ``dH`` (C, 2, 2, 2, N, N, N), ``ddIH`` (C, 2,2,2,2, N,N,N,N) and ``ddIIH`` (same shape),
    neuron indices first, then input indices, in the subscript order of docs/conventions.md §2.
    ``fw`` must carry σ derivatives up to order 1 (H), 2 (dH, ddIIH) or 3 (ddIH).
    ``ddIH_neurons``: optional list of neuron triples (i1, i2, i3) for which ddIH is
    computed (the cost of ddIH is proportional to their number); other entries are NaN.
    """
    if not 1 <= ell <= ens.depth:
        raise InputError(f"layer must be in 1..{ens.depth}; got {ell}")
    out = {"z": fw.z[ell][:, :2, :]}
    if not (H or dH or ddIH or ddIIH):
        return out
    C = ens.size
    N = ens.x.shape[0]
    A = 2 * N
    alpha = np.tile(np.arange(N), 2)           # α_a for a = i*N + α
    neuron = np.repeat(np.arange(2), N)        # i_a
    # Per layer k = 1..ell: per-entry learning rates of b^(k) (None: no bias) and W^(k), shortcut ξ_k.
    rb = [None] + [ens.bias_rate(k - 1) if ens.b[k - 1] is not None else None for k in range(1, ell + 1)]
    rw = [None] + [ens.weight_rate(k - 1) for k in range(1, ell + 1)]
    xi = [None] + [ens.shortcut(k - 1) for k in range(1, ell + 1)]
    # Restricted weights of the target layer (rows 0, 1); others full.
    Ws = [None] + [ens.W[k - 1] for k in range(1, ell)] + [ens.W[ell - 1][:, :2, :]]
    rows = [None] + [Ws[k].shape[1] for k in range(1, ell + 1)]   # rows computed at layer k
    s = fw.s  # s[k][m]

    # Backward Jacobians J[k] (C, n_k, A) and Y[k] = W^(k+1)^T J^(k+1).
    J: list = [None] * (ell + 1)
    Y: list = [None] * (ell + 1)
    Jl = np.zeros((1, 2, A))
    Jl[0, neuron, np.arange(A)] = 1.0
    J[ell] = Jl
    for k in range(ell - 1, 0, -1):
        Y[k] = _mmT(Ws[k + 1], J[k + 1])
        J[k] = s[k][1][:, :, alpha] * Y[k]
        if xi[k + 1] is not None:  # ∂z^(k+1)/∂z^(k) ∋ ξ 1 (rows of J[k+1] are neurons 0.. of layer k)
            J[k][:, :rows[k + 1]] += xi[k + 1] * J[k + 1]
    # Gathered activations S[k] (C, n_k, A) and Gram G[k][c, β, a] = s^(k)_β · s^(k)_{α_a}.
    S: list = [None] * ell
    Gm: list = [None] * ell
    for k in range(ell):
        S[k] = s[k][0][:, :, alpha]
        Gm[k] = _mmT(s[k][0], S[k])             # (C, N, A) as [β, a]
    # Note _mmT gives [c, β, a] since Σ_m s[c,m,β] S[c,m,a].

    # First order: Z1[k] (C, n_k, N, A); D1s[k] = σ' Z1.
    Z1: list = [None] * (ell + 1)
    D1s: list = [None] * ell
    for k in range(1, ell + 1):
        Jk = J[k][:, :, None, :]
        t = rw[k] * Jk * Gm[k - 1][:, None, :, :]
        if rb[k] is not None:
            t = rb[k] * Jk + t
        if k > 1:
            t = t + _mm(Ws[k], D1s[k - 1])
        if xi[k] is not None:
            t = t + xi[k] * Z1[k - 1][:, :rows[k]]
        Z1[k] = np.broadcast_to(t, (C,) + t.shape[1:]) if t.shape[0] != C else t
        if k < ell:
            D1s[k] = s[k][1][..., None] * Z1[k]
    out["H"] = np.transpose(Z1[ell].reshape(C, 2, N, 2, N), (0, 3, 1, 4, 2))  # [c,i1,i2,α1,α2]

    need2 = dH or ddIH
    if need2:
        Z2: list = [None] * (ell + 1)
        D2s: list = [None] * ell
        X1: list = [None] * ell
        for k in range(1, ell + 1):
            if k == 1:
                Z2[k] = np.zeros((C, Ws[1].shape[1], N, A, A))
            else:
                # X1[c, β, a, b] = Σ_m S[m,a] D1s[m,β,b]
                X1k = np.swapaxes(_mmT(S[k - 1], D1s[k - 1]), 1, 2)  # (C, N, A, A)
                X1[k - 1] = X1k
                lwk = rw[k]
                Jk = J[k]
                t = _mm(Ws[k], D2s[k - 1])
                t = t + lwk * (Jk[:, :, None, :, None] * X1k[:, None, :, :, :]
                               + Jk[:, :, None, None, :] * np.swapaxes(X1k, 2, 3)[:, None])
                if xi[k] is not None:
                    t = t + xi[k] * Z2[k - 1][:, :rows[k]]
                Z2[k] = t
            if k < ell:
                z1 = Z1[k]
                D2s[k] = (s[k][2][..., None, None] * z1[..., :, None] * z1[..., None, :]
                          + s[k][1][..., None, None] * Z2[k])
        out["dH"] = _to_neuron_first(Z2[ell], N, 2)

    if ddIH:
        # Triples (a1, a2, a3) of directions, restricted to the requested neuron patterns.
        pats = [tuple(p) for p in (ddIH_neurons if ddIH_neurons is not None
                                   else np.ndindex(2, 2, 2))]
        trip = np.array([(n1 * N + a1, n2 * N + a2, n3 * N + a3) for (n1, n2, n3) in pats
                         for a1 in range(N) for a2 in range(N) for a3 in range(N)])
        ia, ib, ic = trip[:, 0], trip[:, 1], trip[:, 2]
        Z3 = None
        D3s = None
        for k in range(1, ell + 1):
            if k == 1:
                Z3 = np.zeros((C, Ws[1].shape[1], N, len(trip)))
            else:
                X2 = np.swapaxes(_mmT(S[k - 1], D2s[k - 1]), 1, 2)  # (C, N, a, b, c)
                lwk = rw[k]
                Jk = J[k]
                t = _mm(Ws[k], D3s)
                t = t + lwk * (Jk[:, :, None, ia] * X2[:, None, :, ia, ib, ic]
                               + Jk[:, :, None, ib] * X2[:, None, :, ib, ia, ic]
                               + Jk[:, :, None, ic] * X2[:, None, :, ic, ia, ib])
                if xi[k] is not None:
                    t = t + xi[k] * Z3[:, :rows[k]]
                Z3 = t
            if k < ell:
                z1 = Z1[k]
                z2 = Z2[k]
                a_, b_, c_ = z1[..., ia], z1[..., ib], z1[..., ic]
                D3s = (s[k][3][..., None] * a_ * b_ * c_
                       + s[k][2][..., None] * (z2[..., ia, ib] * c_ + z2[..., ia, ic] * b_
                                               + z2[..., ib, ic] * a_)
                       + s[k][1][..., None] * Z3)
        full = np.full((C, 2, N, A, A, A), np.nan)
        full[:, :, :, ia, ib, ic] = Z3
        out["ddIH"] = _to_neuron_first(full, N, 3)

    if ddIIH:
        # DJ[k][c, j, d, e] = D_{u_e} J^(k)_d ; DJ[ell] = 0.
        DJ: list = [None] * (ell + 1)
        DJ[ell] = None
        for k in range(ell - 1, 0, -1):
            JJ = _mmT(J[k + 1], J[k + 1])
            # JJ[c, e, d] = J_e · J_d (symmetric)
            term = rw[k + 1] * S[k][:, :, None, :] * JJ[:, None, :, :]  # [c,j,d,e]
            if DJ[k + 1] is not None:
                term = term + _mmT(Ws[k + 1], DJ[k + 1])
            s1g = s[k][1][:, :, alpha]                  # (C, n, A) [j, d]
            s2g = s[k][2][:, :, alpha]
            z1g = Z1[k][:, :, alpha, :]                 # (C, n, A(d), A(e))
            DJ[k] = s2g[..., None] * z1g * Y[k][..., None] + s1g[..., None] * term
            if xi[k + 1] is not None and DJ[k + 1] is not None:
                DJ[k] = DJ[k] + xi[k + 1] * DJ[k + 1]
        # DS[k][c, m, d, e] = D_e σ(z^(k)_{α_d}) (k >= 1)
        DS = [None] + [D1s[k][:, :, alpha, :] for k in range(1, ell)]
        Zw1: list = [None] * (ell + 1)
        Dws: list = [None] * ell
        Zwu = None
        Dwus = None
        for k in range(1, ell + 1):
            lwk = rw[k]
            Jk = J[k]
            t = 0.0
            if DJ[k] is not None:
                t = lwk * DJ[k][:, :, None] * Gm[k - 1][:, None, :, :, None]
                if rb[k] is not None:
                    t = rb[k] * DJ[k][:, :, None] + t
            if k > 1:
                GD = _mmT(s[k - 1][0], DS[k - 1])        # (C, β, d, e)
                t = t + lwk * Jk[:, :, None, :, None] * GD[:, None]
                t = t + _mm(Ws[k], Dws[k - 1])
                if xi[k] is not None:
                    t = t + xi[k] * Zw1[k - 1][:, :rows[k]]
            if np.isscalar(t):
                t = np.zeros((C, Ws[k].shape[1], N, A, A))
            Zw1[k] = t
            # second order (w, u_c): [c, j, β, d, e, c']
            if k == 1:
                Zwu = np.zeros((C, Ws[1].shape[1], N, A, A, A))
            else:
                X1k = np.swapaxes(_mmT(S[k - 1], D1s[k - 1]), 1, 2)       # [β, d, c']
                XD = np.moveaxis(_mmT(DS[k - 1].reshape(C, -1, A * A), D1s[k - 1]), 1, 2)
                XD = XD.reshape(C, N, A, A, A)                            # [β, d, e, c']
                XW = np.swapaxes(_mmT(S[k - 1], Dws[k - 1]), 1, 2)       # [β, c', d, e]
                t = _mm(Ws[k], Dwus)
                if DJ[k] is not None:
                    t = t + lwk * DJ[k][:, :, None, :, :, None] * X1k[:, None, :, :, None, :]
                t = t + lwk * Jk[:, :, None, :, None, None] * XD[:, None]
                t = t + lwk * Jk[:, :, None, None, None, :] * np.transpose(XW, (0, 1, 3, 4, 2))[:, None]
                if xi[k] is not None:
                    t = t + xi[k] * Zwu[:, :rows[k]]
                Zwu = t
            if k < ell:
                Dws[k] = s[k][1][..., None, None] * Zw1[k]
                Dwus = (s[k][2][..., None, None, None] * Zw1[k][..., None] * Z1[k][..., None, None, :]
                        + s[k][1][..., None, None, None] * Zwu)
        # Zwu[c, i1, α1, d=(i2,α2), e=(i4,α4), c'=(i3,α3)] -> ddIIH[c, i1,i2,i3,i4, α1..α4]
        t = Zwu.reshape(C, 2, N, 2, N, 2, N, 2, N)  # c i1 α1 i2 α2 i4 α4 i3 α3
        out["ddIIH"] = np.transpose(t, (0, 1, 3, 7, 5, 2, 4, 8, 6))
    return out


def _to_neuron_first(Z: np.ndarray, N: int, order: int) -> np.ndarray:
    """Z[c, i0, α0, a1, …, a_order] with a = (i, α) -> [c, i0, i1, …, α0, α1, …]."""
    C = Z.shape[0]
    t = Z.reshape((C, 2, N) + (2, N) * order)
    neurons = [1] + [3 + 2 * r for r in range(order)]
    inputs = [2] + [4 + 2 * r for r in range(order)]
    return np.transpose(t, [0] + neurons + inputs)
