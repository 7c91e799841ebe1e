"""Gradient descent at order 1/n: the ensemble mean and covariance of the trained outputs.

The update of docs/conventions.md §7 (full-batch gradient descent, squared loss, global step η)
is expanded to the order at which it is exact at O(1/n) in every expectation.  With the combined
index a = (i, α) of :mod:`ntkdiagrams.training.tensors`, B, C, D running over the training pairs
only, and ε = z − y on training pairs (ε = z on test pairs, whose targets are never used):

    z_a(t+1)      = z_a − η H_{aB} ε_B + (η²/2) dH_{aBC} ε_B ε_C − (η³/6) ddIH_{aBCD} ε_B ε_C ε_D
    H_ab(t+1)     = H_ab − η (dH_{abC} + dH_{baC}) ε_C + (η²/2) Y_{abCD} ε_C ε_D
    dH_abc(t+1)   = dH_abc − η X_{abcD} ε_D
    Y_{abcd} = ddIH_{abcd} + ddIH_{bacd} + ddIIH_{abcd} + ddIIH_{abdc},   X_{abcd} = ddIH_{abcd} + ddIIH_{abcd} + ddIIH_{acbd}

(the two last lines are the chain rule applied to the definitions of H and dH, docs/training.md).
Sizes: ΔH = H − E[H] is O(n^{-1/2}), E[H] = Θ + Θ1/n, dH is O(1/n) with E[dH z] = 𝒫/n, the
ddNTKs are O(1/n) and enter through their means ℛ/n, 𝒮/n.  Writing z = z⁰ + z¹ + z² by powers
of n^{-1/2}, with U v = v − η Θ_{·B} v_B the frozen-kernel step:

    z⁰(t+1) = U z⁰(t)                         (kernel gradient descent: z⁰(t) = ȳ + m_t + E_t z(0))
    z¹(t+1) = U z¹(t) − η ΔH_{·B} ε⁰_B(t)
    z²(t+1) = U z²(t) − η ΔH_{·B} z¹_B − η Θ1_{·B} ε⁰_B/n − η h_{·B} ε⁰_B + (η²/2) dH_{·BC} ε⁰_B ε⁰_C − (η³/6) ddIH ε⁰ε⁰ε⁰

with h(t) = H(t) − H(0) from the dNTK and ddNTK.  Expectations use Wick's theorem for z(0) at
leading order (covariance 𝒦), the factorisation of every connected correlator beyond the
tensors above (O(1/n²)), and Stein's lemma for the dNTK, E[dH_{abc} f(z)] = Σ_d 𝒫_{abcd} E[∂f/∂z_d]/n.
Then

    E[z(T)]   = ȳ + m_T + u_T/n,                      u_t = n E[z²(t)]
    Cov[z(T)] = E_T 𝒦 E_Tᵀ + (1/n)[E_T 𝒢 E_Tᵀ + n E[z¹z¹ᵀ] + E_T Z¹ + (E_T Z¹)ᵀ + E_T W_T + (E_T W_T)ᵀ],

Z¹ = n E[z(0) z¹(T)ᵀ], W_t = n E[z(0) z²(t)ᵀ], all propagated step by step (no T² sums): the
function :func:`solve` is the recursion, and docs/training.md the derivation.  The connected
four-point function V does not enter (z⁰ is linear in z(0)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError, NumericsError
from .tensors import OutputStatistics

__all__ = ["CONTRIBUTIONS", "StepMoments", "solve", "stable_step"]

#: the O(1/n) contributions, by the statistic that carries them
CONTRIBUTIONS = ("G1", "Theta1", "NTK-fluctuations", "dNTK", "ddNTK")


@dataclass(frozen=True)
class StepMoments:
    """Mean and covariance of the outputs (combined index) after ``step`` steps:
    infinite-width values and the coefficients of 1/n.  ``kernel_map``: E_T, the infinite-width
    outputs as a function of the initial ones, z⁰(T) = mean + E_T z(0) (a control variate for
    Monte Carlo: z(T) − E_T z(0) has O(n^{-1/2}) fluctuations)."""

    step: float
    mean: np.ndarray
    mean_correction: np.ndarray
    cov: np.ndarray
    cov_correction: np.ndarray
    kernel_map: np.ndarray | None = None
    steps_run: int = 0


def stable_step(theta_train: np.ndarray) -> float:
    """The largest stable step of kernel gradient descent, 2/λ_max(Θ_AA)."""
    lam = np.linalg.eigvalsh(0.5 * (theta_train + theta_train.T))
    if lam[-1] <= 0:
        raise InputError("the NTK of the training inputs is not positive: no stable learning rate")
    return 2.0 / float(lam[-1])


@dataclass
class _Quadratic:
    """Σ_{s<t} u_s ⊗ v_s for affine u_s = mu_s + Eu_s z, v_s = mv_s + Ev_s z (z ~ N(0, K)), kept as
    the pieces the Gaussian expectations need: const (mu mvᵀ), lin[C,D,g] = Σ (mu_C (Ev K)_{Dg} +
    (Eu K)_{Cg} mv_D), tr = Σ Eu K Evᵀ and sq[C,g,D,h] = Σ (Eu K)_{Cg} (Ev K)_{Dh}."""

    const: np.ndarray
    lin: np.ndarray
    tr: np.ndarray
    sq: np.ndarray

    @classmethod
    def zeros(cls, m: int, M: int) -> "_Quadratic":
        return cls(np.zeros((m, m)), np.zeros((m, m, M)), np.zeros((m, m)), np.zeros((m, M, m, M)))

    def add(self, mu, Eu, mv, Ev, K) -> None:
        EuK, EvK = Eu @ K, Ev @ K
        self.const += np.outer(mu, mv)
        self.lin += mu[:, None, None] * EvK[None, :, :] + EuK[:, None, :] * mv[None, :, None]
        self.tr += EuK @ Ev.T
        self.sq += EuK[:, :, None, None] * EvK[None, None, :, :]

    def times(self, m, E, K) -> tuple[np.ndarray, np.ndarray]:
        """E[ε_B Q_CD] (B,C,D) and E[z_g ε_B Q_CD] (g,B,C,D) for ε = m + E z."""
        base = self.const + self.tr
        mean = m[:, None, None] * base[None] + np.tensordot(E, self.lin, axes=(1, 2))
        KE = K @ E.T                                                     # (g, B)
        sqE = np.tensordot(self.sq, E, axes=(3, 1))                      # (c, g, d, b)
        z = (KE[:, :, None, None] * base[None, None] + m[None, :, None, None] * self.lin.transpose(2, 0, 1)[:, None]
             + sqE.transpose(1, 3, 0, 2) + np.tensordot(self.sq, E, axes=(1, 1)).transpose(2, 3, 0, 1))
        return mean, z


def _triple(a, b, c, K):
    """E[u_B v_C w_D] and E[z_g u_B v_C w_D] for affine u, v, w = (mean, matrix) and z ~ N(0, K)."""
    (ma, Ea), (mb, Eb), (mc, Ec) = a, b, c
    Cab, Cac, Cbc = Ea @ K @ Eb.T, Ea @ K @ Ec.T, Eb @ K @ Ec.T
    mean = (np.einsum("b,c,d->bcd", ma, mb, mc) + np.einsum("b,cd->bcd", ma, Cbc)
            + np.einsum("c,bd->bcd", mb, Cac) + np.einsum("d,bc->bcd", mc, Cab))
    ka, kb, kc = K @ Ea.T, K @ Eb.T, K @ Ec.T
    z = (np.einsum("gb,cd->gbcd", ka, np.outer(mb, mc) + Cbc) + np.einsum("gc,bd->gbcd", kb, np.outer(ma, mc) + Cac)
         + np.einsum("gd,bc->gbcd", kc, np.outer(ma, mb) + Cab))
    return mean, z


def _stein_pair(P, u, v, K):
    """For f_a = Σ_{BC} dH_{aBC} u_B v_C (dH correlated with z through P[a,B,C,d] = n E[dH z_d]):
    n E[f_a] and n E[z_e f_a] by Stein's lemma (u, v affine: (mean, matrix))."""
    (mu, Eu), (mv, Ev) = u, v
    Pv = np.tensordot(P, Ev, axes=([2, 3], [0, 1]))                     # (a, B): Σ_{Cd} P_aBCd Ev_Cd
    Pu = np.tensordot(P, Eu, axes=([1, 3], [0, 1]))                     # (a, C): Σ_{Bd} P_aBCd Eu_Bd
    mean = Pv @ mu + Pu @ mv
    second = np.outer(mu, mv) + Eu @ K @ Ev.T                           # E[u_B v_C]
    KEu, KEv = K @ Eu.T, K @ Ev.T                                      # (e, B), (e, C)
    z = np.tensordot(P, second, axes=([1, 2], [0, 1])).T + KEu @ Pv.T + KEv @ Pu.T
    return mean, z


def solve(stats: OutputStatistics, n_train: int, targets: np.ndarray, lr: float, steps: Sequence[float], *,
          include: Sequence[str] = CONTRIBUTIONS, tol: float = 1e-13, max_steps: int = 200_000,
          check_every: int = 25, progress: Callable | None = None) -> list[StepMoments]:
    """Mean and covariance of the outputs after each of ``steps`` (sorted; ``math.inf``: converged).

    ``stats``: the output layer's combined tensors; the first ``n_train`` inputs are the training
    set, with ``targets`` (n_train, n_out); ``lr``: the global step η (per-parameter rates are
    inside Θ and the other tensors); ``include``: the O(1/n) contributions kept (see
    :data:`CONTRIBUTIONS`; leaving some out is for demonstrating that they matter)."""
    N, n_out, M = stats.n_inputs, stats.n_out, stats.size
    unknown = sorted(set(include) - set(CONTRIBUTIONS))
    if unknown:
        raise InputError(f"unknown contribution(s) {unknown}; choose from {list(CONTRIBUTIONS)}")
    Tr = np.array([i * N + a for i in range(n_out) for a in range(n_train)], dtype=int)
    m_tr = Tr.size
    y = np.asarray(targets, dtype=float).reshape(n_train, n_out)
    ybar = np.zeros(M)
    ybar[Tr] = y.T.reshape(-1)
    K, Th = stats.K, stats.Theta
    ThTr = Th[:, Tr]
    eta = float(lr)
    step_max = stable_step(Th[np.ix_(Tr, Tr)])
    if not eta < step_max:
        raise InputError(f"learning rate η = {eta:g} is not below the largest stable step of kernel gradient "
                         f"descent on these training inputs, 2/λ_max(Θ) = {step_max:.6g}")
    finite = [int(s) for s in steps if not math.isinf(s)]
    want_inf = any(math.isinf(s) for s in steps)
    if want_inf:
        lam = np.linalg.eigvalsh(Th[np.ix_(Tr, Tr)])
        if lam[0] <= 1e-12 * lam[-1]:
            raise InputError("T = inf: the NTK of the training inputs is singular (repeated training inputs?), "
                             "so gradient descent does not converge; give finite steps")
    use = set(include)

    # restricted tensors: (a, B, c, D) for ΔH_{aB} ΔH_{cD}; dH_{aBC} z_d and dH_{BaC} z_d
    A_sub = stats.A[:, Tr][:, :, :, Tr]
    A_flat = A_sub.reshape(M, -1)
    D_sub = stats.D[:, Tr]                                   # (c, D, e, f): E[ΔH_{cD} z_e z_f]
    P1 = stats.P[:, Tr][:, :, Tr]                            # (a, B, C, d)
    P2 = np.transpose(stats.P[Tr][:, :, Tr], (1, 0, 2, 3))   # (a, B, C, d) = P[B, a, C, d]
    R, S = stats.R, stats.S
    X = R + S + np.transpose(S, (0, 2, 1, 3))
    Xs = X + np.transpose(X, (1, 0, 2, 3))
    Y = R + np.transpose(R, (1, 0, 2, 3)) + S + np.transpose(S, (0, 1, 3, 2))
    ix = np.ix_(np.arange(M), Tr, Tr, Tr)
    Xs_t, Y_t, X_t, R_t = Xs[ix], Y[ix], X[ix], R[ix]
    Th1Tr = stats.Theta1[:, Tr]

    m = -ybar.copy()                 # ε⁰(t) = m + E z(0)
    E = np.eye(M)
    MS, ES = np.zeros(m_tr), np.zeros((m_tr, M))   # S_t = Σ_{s<t} ε⁰_Tr(s)
    J = np.zeros((M, M, m_tr, M + 1))              # z¹_a = Σ J[a, c, D, k] ΔH_{cD} w_k, w = (z(0), 1)
    u = np.zeros(M)                                # n E[z²]
    W = np.zeros((M, M))                           # n E[z(0)_e z²_a]  (e, a)
    Pi, Om = _Quadratic.zeros(m_tr, M), _Quadratic.zeros(m_tr, M)
    Mw = np.zeros((M + 1, M + 1))
    Mw[:M, :M], Mw[M, M] = K, 1.0

    def U(v, axis=0):
        """v − η Θ_{·B} v_B along ``axis`` (the output index)."""
        v = np.moveaxis(v, axis, 0)
        out = v - eta * np.tensordot(ThTr, v[Tr], axes=(1, 0))
        return np.moveaxis(out, 0, axis)

    def moments(t) -> StepMoments:
        mean0 = ybar + m
        cov0 = E @ K @ E.T
        JA = np.tensordot(J, A_sub, axes=([1, 2], [0, 1]))              # (a, k, x, e)
        JAM = np.tensordot(JA, Mw, axes=(1, 0))                          # (a, x, e, l)
        Q1 = np.tensordot(JAM, J, axes=([1, 2, 3], [1, 2, 3]))
        Z1 = np.tensordot(D_sub, J[..., :M], axes=([0, 1, 3], [1, 2, 3]))  # (e, b)
        C01 = E @ Z1
        EW = E @ W
        cov1 = (E @ stats.G1 @ E.T if "G1" in use else 0.0) + Q1 + C01 + C01.T + EW + EW.T
        return StepMoments(step=t, mean=mean0, mean_correction=u.copy(), cov=cov0, cov_correction=cov1,
                           kernel_map=E.copy())

    out: list[StepMoments] = []
    pending = sorted(finite)
    t = 0
    last = None
    limit = max_steps if want_inf else (pending[-1] if pending else 0)
    while True:
        while pending and pending[0] == t:
            out.append(moments(t))
            pending.pop(0)
        if not pending and not want_inf:
            break
        if want_inf and not pending and t % check_every == 0:
            cur = moments(math.inf)
            if last is not None:
                scale = 1.0 + max(np.abs(cur.cov).max(), np.abs(cur.cov_correction).max(),
                                  np.abs(cur.mean).max(), np.abs(cur.mean_correction).max())
                change = max(np.abs(cur.mean - last.mean).max(), np.abs(cur.cov - last.cov).max(),
                             np.abs(cur.mean_correction - last.mean_correction).max(),
                             np.abs(cur.cov_correction - last.cov_correction).max())
                if change <= tol * scale:
                    out.append(StepMoments(math.inf, cur.mean, cur.mean_correction, cur.cov, cur.cov_correction,
                                           kernel_map=cur.kernel_map, steps_run=t))
                    break
            last = cur
        if t >= limit:
            raise NumericsError(f"T = inf: gradient descent not converged to {tol:g} after {t} steps (η = {eta:g}; "
                                f"the slowest mode decays like (1 − ηλ_min)^t); give finite steps or a larger η")
        mT, ET = m[Tr], E[Tr]
        src, srcW = np.zeros(M), np.zeros((M, M))
        if "NTK-fluctuations" in use:
            JT = J[Tr]
            src += -eta * (A_flat @ JT[..., M].reshape(-1))
            srcW += -eta * (K @ (A_flat @ JT[..., :M].reshape(-1, M)).T)
        if "Theta1" in use:
            src += -eta * Th1Tr @ mT
            srcW += -eta * (K @ ET.T) @ Th1Tr.T
        eps, Ssum = (mT, ET), (MS, ES)
        if "dNTK" in use:
            for P, uu, vv, c in ((P1, eps, Ssum, eta ** 2), (P1, eps, eps, eta ** 2 / 2), (P2, eps, Ssum, eta ** 2)):
                a, b = _stein_pair(P, uu, vv, K)
                src += c * a
                srcW += c * b
        if "ddNTK" in use:
            c3 = -eta ** 3
            for T4, (mean3, z3), c in (
                    (Xs_t, Pi.times(mT, ET, K), 1.0),
                    (Y_t, Om.times(mT, ET, K), 0.5),
                    (X_t, _triple(eps, eps, Ssum, K), 0.5),
                    (R_t, _triple(eps, eps, eps, K), 1.0 / 6.0)):
                T4f = T4.reshape(M, -1)
                src += c3 * c * (T4f @ mean3.reshape(-1))
                srcW += c3 * c * (z3.reshape(M, -1) @ T4f.T)
        # advance every piece from t to t + 1
        u = U(u) + src
        W = U(W, axis=1) + srcW
        Jnew = U(J)
        Et = np.concatenate([ET, mT[:, None]], axis=1)          # (D, k)
        Jnew[np.arange(M), np.arange(M)] -= eta * Et
        J = Jnew
        Pi.add(mT, ET, MS, ES, K)
        Om.add(mT, ET, mT, ET, K)
        MS, ES = MS + mT, ES + ET
        m, E = U(m), U(E)
        t += 1
        if progress is not None and t % 200 == 0:
            progress(t, pending[-1] if pending else None)
    out.sort(key=lambda s: s.step)
    return out
