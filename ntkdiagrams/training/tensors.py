"""The output layer's statistics as tensors over (output neuron, input) pairs.

Training mixes output neurons and inputs, so the dynamics (:mod:`ntkdiagrams.training.dynamics`)
work with one combined index a = (i, α), flattened neuron-major: ``a = i·N + α`` for output
neurons i = 0..n_out−1 and inputs α = 0..N−1.  With the Kronecker structures of
docs/conventions.md §3 (every quantity is the coefficient of 1/n, n the fan-in of the output
layer) the combined tensors are

    𝒦_{ab}      = δ_{i_a i_b} K_{αβ},   𝒢_{ab} = δ G1,   Θ_{ab} = δ Θ,   Θ1_{ab} = δ Θ1
    𝒜_{abcd}   = n Cov(ΔH_{ab}, ΔH_{cd})
               = δ_{i1i2}δ_{i3i4} A_{(α1α2)(α3α4)} + δ_{i1i3}δ_{i2i4} B_{α1α3α2α4} + δ_{i1i4}δ_{i2i3} B_{α1α4α2α3}
    𝒟_{abcd}   = n E[ΔH_{ab} z_c z_d]
               = δ_{i1i2}δ_{i3i4} D_{α1α2α3α4} + δ_{i1i3}δ_{i2i4} F_{α1α3α2α4} + δ_{i1i4}δ_{i2i3} F_{α1α4α2α3}
    𝒫_{abcd}   = n E[dH_{abc} z_d]
               = δ_{i0i3}δ_{i1i2} P_{α0α1α2α3} + δ_{i0i1}δ_{i2i3} Q_{α0α1α2α3} + δ_{i0i2}δ_{i1i3} Q_{α0α2α1α3}
    ℛ_{abcd}   = n E[ddIH_{abcd}]
               = δ_{i0i1}δ_{i2i3} R_{α0α1α2α3} + δ_{i0i2}δ_{i3i1} R_{α0α2α3α1} + δ_{i0i3}δ_{i1i2} R_{α0α3α1α2}
    𝒮_{abcd}   = n E[ddIIH_{abcd}]
               = δ_{i1i2}δ_{i3i4} S_{α1α2α3α4} + δ_{i1i3}δ_{i4i2} T_{α1α3α4α2} + δ_{i1i4}δ_{i2i3} U_{α1α4α2α3}

(the arrays ``B[a, b, c, d]`` etc. are in the storage order of docs/conventions.md §3).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = ["OutputStatistics", "TRAINING_STATISTICS", "combine"]

#: the tensors the O(1/n) training dynamics need (the derivation in docs/training.md shows that
#: the connected four-point function V does not enter the mean or the covariance at this order)
TRAINING_STATISTICS = ("K", "G1", "Theta", "Theta1", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U")


@dataclass(frozen=True)
class OutputStatistics:
    """Combined (neuron, input) tensors of the output layer; see the module docstring.

    ``K, G1, Theta, Theta1``: (M, M) with M = n_out·N; ``A, D, P, R, S``: (M, M, M, M) in the
    index order of their definitions (ΔH_{ab}ΔH_{cd}, ΔH_{ab}z_cz_d, dH_{abc}z_d, ddIH_{abcd},
    ddIIH_{abcd})."""

    n_out: int
    n_inputs: int
    K: np.ndarray
    G1: np.ndarray
    Theta: np.ndarray
    Theta1: np.ndarray
    A: np.ndarray
    D: np.ndarray
    P: np.ndarray
    R: np.ndarray
    S: np.ndarray

    @property
    def size(self) -> int:
        return self.n_out * self.n_inputs


def combine(layer: dict, n_out: int) -> OutputStatistics:
    """The combined tensors of :class:`OutputStatistics` from one layer's dict of
    :func:`ntkdiagrams.evaluate` (it must hold every name of :data:`TRAINING_STATISTICS`)."""
    missing = [t for t in TRAINING_STATISTICS if t not in layer]
    if missing:
        raise InputError(f"the training prediction needs {', '.join(missing)} of the output layer")
    if int(n_out) != n_out or n_out < 1:
        raise InputError(f"the output width must be a positive integer; got {n_out!r}")
    n_out = int(n_out)
    d = np.eye(n_out)
    N = np.asarray(layer["K"]).shape[0]
    M = n_out * N

    def two(X):
        return np.einsum("ij,ab->iajb", d, np.asarray(X, dtype=float)).reshape(M, M)

    def four(spec_terms):
        out = np.zeros((n_out, N) * 4)
        for pairs, arr, order in spec_terms:
            out += _structured(pairs, np.asarray(arr, dtype=float), order, n_out)
        # (i1, α1, i2, α2, ...) -> combined (a, b, c, d)
        return out.reshape(M, M, M, M)

    L = layer
    A = four([("12|34", L["A"], "abcd"), ("13|24", L["B"], "acbd"), ("14|23", L["B"], "adbc")])
    D = four([("12|34", L["D"], "abcd"), ("13|24", L["F"], "acbd"), ("14|23", L["F"], "adbc")])
    P = four([("14|23", L["P"], "abcd"), ("12|34", L["Q"], "abcd"), ("13|24", L["Q"], "acbd")])
    R = four([("12|34", L["R"], "abcd"), ("13|24", L["R"], "acdb"), ("14|23", L["R"], "adbc")])
    S = four([("12|34", L["S"], "abcd"), ("13|24", L["T"], "acdb"), ("14|23", L["U"], "adbc")])
    return OutputStatistics(n_out=n_out, n_inputs=N, K=two(L["K"]), G1=two(L["G1"]), Theta=two(L["Theta"]),
                            Theta1=two(L["Theta1"]), A=A, D=D, P=P, R=R, S=S)


def _structured(pairs: str, arr: np.ndarray, order: str, n_out: int) -> np.ndarray:
    """δ_{i_p i_q} δ_{i_r i_s} X_{α…} as an array over (i1, α1, i2, α2, i3, α3, i4, α4).

    ``pairs`` names the two neuron deltas ("12|34": δ_{i1i2}δ_{i3i4}); ``order`` says which input
    of positions 1..4 (letters a, b, c, d) sits at each axis of ``arr`` ("acbd": arr[α1, α3, α2, α4])."""
    (p, q), (r, s) = (tuple(int(c) - 1 for c in part) for part in pairs.split("|"))
    neuron = np.zeros((n_out,) * 4)
    idx = np.indices((n_out,) * 4)
    neuron[...] = (idx[p] == idx[q]) & (idx[r] == idx[s])
    inputs = np.einsum(f"{order}->abcd", arr)
    return np.einsum("ijkl,abcd->iajbkcld", neuron, inputs)
