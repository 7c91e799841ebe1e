"""Fast prediction-vs-Monte-Carlo check of K, G1 and V (docs/conventions.md §6), able to fail.

One small model (tanh, C_b = 0, C_W = 2, depth 3, N = 2 inputs, hidden width n = 16,
300 000 sampled networks, fixed seed).  Checks:

* layer 2: V is exact at every width (the inputs z^(1) of layer 2 are exactly Gaussian and
  independent), so V_MC must agree within 4 standard errors, with no remainder allowance;
* layer 3: G_MC must agree with K + G1/n within 4 standard errors plus an allowance of 30 %
  of |G1|/n for the O(1/n²) remainder; V_MC must agree with V within 4 standard errors plus
  25 % of |V| for the O(1/n) remainder at n = 16.

Each check also asserts that the same criterion *rejects* a wrong prediction: G1 with the
wrong sign, and V multiplied or divided by 2, so a sign error in G1 or a factor-of-two error
in V cannot pass.  The full study is ``scripts/validate_kgv.py`` (docs/validation/kgv.md).
"""
from __future__ import annotations

import numpy as np
import pytest

from ntkdiagrams.numerics.activations import parse_activation
from ntkdiagrams.sampling.model import ModelSpec
from ntkdiagrams.numerics.evaluate import evaluate
from ntkdiagrams.sampling.sampler import sample

N_WIDTH = 16
SAMPLES = 300_000
CB, CW, DEPTH = 0.0, 2.0, 3
X = np.array([[1.0, 1.0, -1.0], [1.4, -0.2, 0.5]])
X *= np.sqrt(X.shape[1]) / np.linalg.norm(X, axis=1, keepdims=True)  # K^(1)_αα = C_W
G_REMAINDER = 0.30   # × |G1|/n, for the O(1/n²) term of G at n = 16
V_REMAINDER = 0.25   # × |V|, for the O(1/n) term of V at n = 16 (layer 3)
NSIG = 4.0
PAIRS = [(0, 0), (0, 1), (1, 1)]
V_COMPS = [p + q for i, p in enumerate(PAIRS) for q in PAIRS[i:]]


@pytest.fixture(scope="module")
def pred_mc():
    pred = evaluate("tanh", DEPTH, X, cb=CB, cw=CW, lb=1.0, lw=1.0, stats=("K", "G1", "V"))
    model = ModelSpec(activation=parse_activation("tanh"), depth=DEPTH, width=N_WIDTH, cb=CB,
                      cw=CW, lb=1.0, lw=1.0, inputs=X)
    mc = sample(model, SAMPLES, seed=20240, batches=30, stats=("K", "G1", "V"))
    return pred, mc


def _g_ok(G, se, K, G1):
    return abs(G - K - G1 / N_WIDTH) < NSIG * se + G_REMAINDER * abs(G1) / N_WIDTH


def _v_ok(V_mc, se, V, remainder):
    return abs(V_mc - V) < NSIG * se + remainder * abs(V)


def test_layer2_exact(pred_mc):
    pred, mc = pred_mc
    P, M = pred[1], mc["layers"][1]
    assert np.allclose(P["G1"], 0.0, atol=1e-12)  # layer 2 is exact: G = K
    for a, b in PAIRS:
        assert _g_ok(M["K+G1"]["mean"][a, b], M["K+G1"]["stderr"][a, b], P["K"][a, b], 0.0), (a, b)
    Vm, Vs = M["V"]["mean"], M["V"]["stderr"]
    for c in V_COMPS:
        assert _v_ok(Vm[c], Vs[c], P["V"][c], 0.0), (c, Vm[c], Vs[c], P["V"][c])
    for factor in (2.0, 0.5):  # a factor-of-two error in V is rejected
        assert not all(_v_ok(Vm[c], Vs[c], factor * P["V"][c], 0.0) for c in V_COMPS), factor


def test_layer3_G1(pred_mc):
    pred, mc = pred_mc
    P, M = pred[2], mc["layers"][2]
    Gm, Gs = M["K+G1"]["mean"], M["K+G1"]["stderr"]
    assert np.all(P["G1"][[0, 1], [0, 1]] < 0)  # tanh: G1 < 0 on the diagonal
    for a, b in PAIRS:
        assert _g_ok(Gm[a, b], Gs[a, b], P["K"][a, b], P["G1"][a, b]), (a, b, Gm[a, b], Gs[a, b])
    # the same criterion rejects G1 with the wrong sign
    wrong = -P["G1"]
    assert not all(_g_ok(Gm[a, b], Gs[a, b], P["K"][a, b], wrong[a, b]) for a, b in PAIRS)


def test_layer3_V(pred_mc):
    pred, mc = pred_mc
    P, M = pred[2], mc["layers"][2]
    Vm, Vs = M["V"]["mean"], M["V"]["stderr"]
    for c in V_COMPS:
        assert _v_ok(Vm[c], Vs[c], P["V"][c], V_REMAINDER), (c, Vm[c], Vs[c], P["V"][c])
    for factor in (2.0, 0.5):
        assert not all(_v_ok(Vm[c], Vs[c], factor * P["V"][c], V_REMAINDER) for c in V_COMPS), factor
