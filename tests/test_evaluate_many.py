"""CompiledRecursion with the objects of order 1/n² (hand-built recursions, no engine): a
six-point expectation ⟨σ_{α1}⋯σ_{α6}⟩_K (V6's one-site diagram), a blob site on three inputs
and a blob sum over a product of two tensors (two blobs on one site), for smooth σ (explicit and
integration by parts agree) and ReLU (integration by parts)."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.engine.recursion import Recursion
from ntkdiagrams.language.algebra import (BlobSum, GaussianExpectation, PartialExpectation, Z, ell, sigma,
                                          tensor_class)
from ntkdiagrams.numerics.activations import parse_activation, z
from ntkdiagrams.numerics.evaluate import CompiledRecursion, GaussianCache
from ntkdiagrams.numerics.gaussian import Quadrature, expectation_tensor
from ntkdiagrams.numerics.hermite import contract_blob
from ntkdiagrams.settings import Settings

SET = Settings(jit=False, threads=1)
C_W = sp.Symbol("C_W")
A = sp.symbols("alpha_1:7")
B = sp.symbols("beta_1:7")
V = tensor_class("V", 4, [(1, 0, 2, 3), (2, 3, 0, 1)])
G1 = tensor_class("G1", 2, [(1, 0)])
X6 = tensor_class("X6", 6)


def kernel(N, seed):
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(N, N + 2))
    return M @ M.T / (N + 2) + 0.3 * np.eye(N)


def run(rhs, labels, act, K, prev, blob_method="auto"):
    rec = Recursion(tensor="X", statistic="X", order=2, labels=labels, target=X6(ell + 1, *A),
                    rhs=rhs, initial=sp.Integer(0), compact=rhs)
    comp = CompiledRecursion(rec, parse_activation(act), [C_W], blob_method=blob_method)
    with Quadrature(SET) as quad:
        return comp(prev, GaussianCache(K, quadrature=quad), (1.5,), K.shape[0])


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_six_point_expectation(act):
    """C_W³ ⟨σ_{α1}⋯σ_{α6}⟩_K over N = 3 inputs: the (3,)*6 tensor of expectation_tensor."""
    K = kernel(3, 1)
    rhs = C_W ** 3 * GaussianExpectation(sp.Mul(*[sigma(Z(a)) for a in A]), ell)
    out = run(rhs, A, act, K, {})
    ref = 1.5 ** 3 * expectation_tensor([parse_activation(act).derivative(0)] * 6, K, settings=SET)
    assert out.shape == (3,) * 6
    assert np.allclose(out, ref, rtol=1e-12, atol=0)


def _blob_three_inputs():
    """Σ_β V_{β1β2β3β4} ⟨∂_{β1}∂_{β2}∂_{β3}∂_{β4}(σ_{α1} σ_{α2} σ'_{α3})⟩."""
    site = PartialExpectation(sigma(Z(A[0])) * sigma(Z(A[1])) * sigma(Z(A[2]), 1), ell, *B[:4])
    return BlobSum(V(ell, *B[:4]), site)


def _two_blobs():
    """Σ_β G1_{β1β2} V_{β3β4β5β6} ⟨∂⁶(σ_{α1} σ_{α2})⟩: two blobs on one site (a product tensor)."""
    site = PartialExpectation(sigma(Z(A[0])) * sigma(Z(A[1])), ell, *B[:6])   # odd·odd: even
    return BlobSum(G1(ell, B[0], B[1]) * V(ell, *B[2:6]), site)


def _prev(N, seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(N,) * 4)
    v = v + v.transpose(1, 0, 2, 3)        # V's symmetries (the group the rule file declares)
    v = v + v.transpose(0, 1, 3, 2)
    v = v + v.transpose(2, 3, 0, 1)
    g = rng.normal(size=(N, N))
    return {"V": v, "G1": g + g.T}


def test_two_blobs_smooth_hermite_vs_explicit():
    """Smooth σ (tanh; the site is even, so no entry vanishes by parity): the blob sum over
    G1 ⊗ V resolved by sympy (explicit σ derivatives up to σ⁽⁶⁾) and integrated by parts."""
    K = kernel(3, 2)
    prev = _prev(3, 3)
    ex = run(_two_blobs(), A[:2], "tanh", K, prev, blob_method="explicit")
    he = run(_two_blobs(), A[:2], "tanh", K, prev, blob_method="hermite")
    assert np.max(np.abs(ex - he)) <= 2e-6 * np.max(np.abs(ex))


@pytest.mark.parametrize("blob", ["three_inputs", "two_blobs"])
def test_blob_sums_relu(blob):
    """ReLU: the compiled blob (a site on three inputs; a product tensor G1 ⊗ V) is contract_blob
    over the tensor (outer product), with the legs in the order of BlobSum's canonical dummies."""
    K = kernel(3, 4)
    prev = _prev(3, 5)
    b = _blob_three_inputs() if blob == "three_inputs" else _two_blobs()
    labels = A[:3] if blob == "three_inputs" else A[:2]
    out = run(b, labels, "relu", K, prev)
    relu = sp.Max(0, z)
    tensors = sp.Mul.make_args(b.tensor)
    legs = [x for t in tensors for x in t.args[1:]]
    summed = sorted(set(legs), key=sp.default_sort_key)
    args = tuple(("leg", summed.index(x)) for x in legs)
    T = prev[tensors[0].tensor_name]
    for t in tensors[1:]:
        T = np.multiply.outer(T, prev[t.tensor_name])
    axes = ("a", "b", "c")[:len(labels)]
    funcs = (relu, relu, sp.Heaviside(z)) if blob == "three_inputs" else (relu, relu)   # σ' = H on α3
    ref = contract_blob(T, args, [(axes, funcs, tuple(range(len(summed))))], K,
                        lambda fs, K: expectation_tensor(list(fs), K, settings=SET), axes)
    assert np.allclose(out, ref, rtol=1e-12, atol=1e-14)
