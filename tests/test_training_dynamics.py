"""The O(1/n) training dynamics (ntkdiagrams.training.dynamics) against independent oracles.

Oracle 1: a surrogate ensemble whose joint law has exactly the statistics of
ntkdiagrams.training.tensors — z(0) = chol(𝒦 + ε𝒢) g, ΔH = √ε ξ + ε D̃(zz − 𝒦), dH(0) = ε R̃ z(0),
ddNTKs = ε ℛ, ε 𝒮 — trained by the *exact* update map of docs/conventions.md §7 (no expansion),
with the expectation over (g, ξ) done by a cubature that is exact for the polynomials involved
(Gauss–Hermite in g, symmetric sigma points in ξ), and d/dε at ε = 0 by Richardson.  Every term of
the O(1/n) solution has its own random tensor, so a wrong or missing term shows.

Oracle 2: kernel gradient descent and kernel regression in closed form (conventions §7).
"""
import itertools
import math

import numpy as np
import pytest

from ntkdiagrams.errors import InputError
from ntkdiagrams.training.dynamics import CONTRIBUTIONS, solve, stable_step
from ntkdiagrams.training.tensors import OutputStatistics, combine


def synthetic(rng, M, k=4, scale=0.3):
    def spd():
        L = rng.normal(size=(M, M))
        return L @ L.T / M + 0.5 * np.eye(M)

    def sym():
        G = rng.normal(size=(M, M)) * scale
        return G + G.T

    K, Th = spd(), spd()
    V = rng.normal(size=(M, M, k)) * scale
    Vs = V + V.transpose(1, 0, 2)                       # ξ_ab = Σ_k Vs_abk ζ_k (symmetric)
    Dt = rng.normal(size=(M,) * 4) * scale
    Dt = Dt + Dt.transpose(1, 0, 2, 3)
    Rt = rng.normal(size=(M,) * 4) * scale
    st = OutputStatistics(
        n_out=1, n_inputs=M, K=K, G1=sym(), Theta=Th, Theta1=sym(),
        A=np.einsum("abk,cdk->abcd", Vs, Vs),
        D=np.einsum("abcd,ce,df->abef", Dt, K, K) + np.einsum("abcd,cf,de->abef", Dt, K, K),
        P=np.einsum("abce,ed->abcd", Rt, K),
        R=rng.normal(size=(M,) * 4) * scale, S=rng.normal(size=(M,) * 4) * scale)
    return st, dict(Vs=Vs, Dt=Dt, Rt=Rt)


def exact_moments(st, aux, n_train, y, eta, T, eps):
    """Mean and covariance of the outputs of the surrogate ensemble after T exact steps."""
    M, k = st.size, aux["Vs"].shape[2]
    x, w = np.polynomial.hermite_e.hermegauss(5)
    w = w / w.sum()
    g = np.array(list(itertools.product(x, repeat=M)))
    wg = np.prod(np.array(list(itertools.product(w, repeat=M))), axis=1)
    zeta = np.vstack([np.zeros(k), np.eye(k), -np.eye(k)])
    wz = np.concatenate([[1.0 - k], np.full(2 * k, 0.5)])   # exact to degree 3 in ζ
    G = np.repeat(g, len(zeta), axis=0)
    Z = np.tile(zeta, (len(g), 1))
    wt = np.repeat(wg, len(zeta)) * np.tile(wz, len(g))
    Tr = np.arange(n_train)
    z = G @ np.linalg.cholesky(st.K + eps * st.G1).T
    zz = np.einsum("sc,sd->scd", z, z) - st.K
    H = (st.Theta + eps * st.Theta1 + np.sqrt(eps) * np.einsum("abk,sk->sab", aux["Vs"], Z)
         + eps * np.einsum("abcd,scd->sab", aux["Dt"], zz))
    dH = eps * np.einsum("abce,se->sabc", aux["Rt"], z)
    R, S = eps * st.R, eps * st.S
    X = R + S + S.transpose(0, 2, 1, 3)
    Y = R + R.transpose(1, 0, 2, 3) + S + S.transpose(0, 1, 3, 2)
    ybar = np.zeros(M)
    ybar[Tr] = y
    RT = R[np.ix_(range(M), Tr, Tr, Tr)]
    for _ in range(T):
        e = (z - ybar)[:, Tr]
        dz = (-eta * np.einsum("saB,sB->sa", H[:, :, Tr], e)
              + eta ** 2 / 2 * np.einsum("saBC,sB,sC->sa", dH[:, :, Tr][:, :, :, Tr], e, e)
              - eta ** 3 / 6 * np.einsum("aBCD,sB,sC,sD->sa", RT, e, e, e))
        dHH = (-eta * np.einsum("sabC,sC->sab", dH[..., Tr] + dH.transpose(0, 2, 1, 3)[..., Tr], e)
               + eta ** 2 / 2 * np.einsum("abCD,sC,sD->sab", Y[:, :, Tr][..., Tr], e, e))
        ddH = -eta * np.einsum("abcD,sD->sabc", X[..., Tr], e)
        z, H, dH = z + dz, H + dHH, dH + ddH
    mean = wt @ z
    cov = np.einsum("s,sa,sb->ab", wt, z - mean, z - mean)
    return mean, cov


@pytest.mark.parametrize("T", [1, 4])
def test_solution_matches_the_exact_update_map(T):
    rng = np.random.default_rng(7)
    st, aux = synthetic(rng, 3)
    y, eta, n_train = np.array([0.7, -0.4]), 0.4, 2
    got = solve(st, n_train, y[:, None], eta, [0, T])[1]
    eps = 1e-4
    (m0, c0), (m1, c1), (m2, c2) = (exact_moments(st, aux, n_train, y, eta, T, e) for e in (0.0, eps, 2 * eps))
    dm = (4 * (m1 - m0) - (m2 - m0)) / (2 * eps)
    dc = (4 * (c1 - c0) - (c2 - c0)) / (2 * eps)
    np.testing.assert_allclose(got.mean, m0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.cov, c0, rtol=0, atol=1e-12)
    # Richardson leaves O(ε²) ~ 1e-8 relative; a missing or doubled term is O(1)
    np.testing.assert_allclose(got.mean_correction, dm, rtol=0, atol=1e-5 * np.abs(dm).max())
    np.testing.assert_allclose(got.cov_correction, dc, rtol=0, atol=1e-5 * np.abs(dc).max())


def test_every_contribution_is_needed():
    rng = np.random.default_rng(3)
    st, _ = synthetic(rng, 3)
    full = solve(st, 2, np.array([[0.5], [0.1]]), 0.3, [3])[0]
    for drop in CONTRIBUTIONS:
        part = solve(st, 2, np.array([[0.5], [0.1]]), 0.3, [3], include=[c for c in CONTRIBUTIONS if c != drop])[0]
        diff = np.abs(np.concatenate([(part.mean_correction - full.mean_correction).ravel(),
                                      (part.cov_correction - full.cov_correction).ravel()])).max()
        assert diff > 1e-3, drop


def kernel_gd(Th, K, n_train, y, eta, T):
    """z(T) = M z(0) + c with the closed form of conventions §7 (one output neuron)."""
    N = Th.shape[0]
    A, d = slice(0, n_train), slice(n_train, N)
    lam, Q = np.linalg.eigh(Th[A, A])
    if math.isinf(T):
        decay = np.zeros_like(lam)
    else:
        decay = (1 - eta * lam) ** T
    inv_part = Q @ np.diag((1 - decay) / lam) @ Q.T      # Θ_AA⁻¹ [1 − (1 − ηΘ_AA)^T]
    Mmat = np.eye(N)
    Mmat[A, A] = Q @ np.diag(decay) @ Q.T
    Mmat[d, A] = -Th[d, A] @ inv_part
    c = np.zeros(N)
    c[A] = y - Mmat[A, A] @ y
    c[d] = Th[d, A] @ inv_part @ y
    return Mmat @ K @ Mmat.T, c


@pytest.mark.parametrize("T", [0, 1, 10, 100, math.inf])
def test_infinite_width_part_is_kernel_gradient_descent(T):
    rng = np.random.default_rng(11)
    st, _ = synthetic(rng, 5)
    y = rng.normal(size=3)
    eta = 0.7 * stable_step(st.Theta[:3, :3])
    got = solve(st, 3, y[:, None], eta, [T])[0]
    cov, mean = kernel_gd(st.Theta, st.K, 3, y, eta, T)
    np.testing.assert_allclose(got.mean, mean, rtol=0, atol=1e-12 * (1 + np.abs(mean).max()))
    np.testing.assert_allclose(got.cov, cov, rtol=0, atol=1e-12 * np.abs(cov).max())
    if math.isinf(T):   # kernel regression: the test means are Θ_δA Θ_AA⁻¹ y, training outputs fit
        np.testing.assert_allclose(got.mean[3:], st.Theta[3:, :3] @ np.linalg.solve(st.Theta[:3, :3], y), atol=1e-12)
        np.testing.assert_allclose(got.mean[:3], y, atol=1e-12)


def test_converged_equals_many_steps():
    rng = np.random.default_rng(5)
    st, _ = synthetic(rng, 4)
    eta = 0.8 * stable_step(st.Theta[:2, :2])
    y = np.array([[0.3], [-0.2]])
    (long,), (inf,) = solve(st, 2, y, eta, [3000]), solve(st, 2, y, eta, [math.inf])
    assert math.isinf(inf.step) and inf.steps_run < 3000
    for a, b in ((long.mean_correction, inf.mean_correction), (long.cov_correction, inf.cov_correction)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 * np.abs(b).max())


def test_bad_input():
    rng = np.random.default_rng(5)
    st, _ = synthetic(rng, 3)
    y = np.array([[0.3], [-0.2]])
    with pytest.raises(InputError, match="largest stable step"):
        solve(st, 2, y, 1.01 * stable_step(st.Theta[:2, :2]), [3])
    with pytest.raises(InputError, match="unknown contribution"):
        solve(st, 2, y, 0.1, [3], include=["V"])
    sing = OutputStatistics(**{**st.__dict__, "Theta": np.ones((3, 3)) + 1e-18 * np.eye(3)})
    with pytest.raises(InputError, match="singular"):
        solve(sing, 2, y, 0.1, [math.inf])


def test_combined_tensors_follow_the_kronecker_structures():
    rng = np.random.default_rng(2)
    N = 2
    layer = {t: rng.normal(size=(N, N)) for t in ("K", "G1", "Theta", "Theta1")}
    layer.update({t: rng.normal(size=(N,) * 4) for t in ("A", "B", "D", "F", "P", "Q", "R", "S", "T", "U")})
    st = combine(layer, 2)
    d = lambda i, j: float(i == j)
    for (i1, a1), (i2, a2), (i3, a3), (i4, a4) in itertools.product(itertools.product(range(2), range(N)), repeat=4):
        ix = tuple(i * N + a for i, a in ((i1, a1), (i2, a2), (i3, a3), (i4, a4)))
        L = layer
        assert st.A[ix] == pytest.approx(d(i1, i2) * d(i3, i4) * L["A"][a1, a2, a3, a4]
                                         + d(i1, i3) * d(i2, i4) * L["B"][a1, a3, a2, a4]
                                         + d(i1, i4) * d(i2, i3) * L["B"][a1, a4, a2, a3])
        assert st.D[ix] == pytest.approx(d(i1, i2) * d(i3, i4) * L["D"][a1, a2, a3, a4]
                                         + d(i1, i3) * d(i2, i4) * L["F"][a1, a3, a2, a4]
                                         + d(i1, i4) * d(i2, i3) * L["F"][a1, a4, a2, a3])
        assert st.P[ix] == pytest.approx(d(i1, i4) * d(i2, i3) * L["P"][a1, a2, a3, a4]
                                         + d(i1, i2) * d(i3, i4) * L["Q"][a1, a2, a3, a4]
                                         + d(i1, i3) * d(i2, i4) * L["Q"][a1, a3, a2, a4])
        assert st.R[ix] == pytest.approx(d(i1, i2) * d(i3, i4) * L["R"][a1, a2, a3, a4]
                                         + d(i1, i3) * d(i4, i2) * L["R"][a1, a3, a4, a2]
                                         + d(i1, i4) * d(i2, i3) * L["R"][a1, a4, a2, a3])
        assert st.S[ix] == pytest.approx(d(i1, i2) * d(i3, i4) * L["S"][a1, a2, a3, a4]
                                         + d(i1, i3) * d(i4, i2) * L["T"][a1, a3, a4, a2]
                                         + d(i1, i4) * d(i2, i3) * L["U"][a1, a4, a2, a3])
    assert st.K[0, N] == 0 and st.K[1, 1] == layer["K"][1, 1] and st.K[N + 1, N] == layer["K"][1, 0]
