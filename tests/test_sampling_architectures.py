"""The sampler's architectures from rule files (ntkdiagrams.sampling.interpreter).

1. Per-network objects (z, H, dH, ddIH, ddIIH) of networks built from rule files (the residual
   MLP, per-layer widths, bias-free layers, coefficients on terms) against a brute force that
   writes the forward pass by hand, flattens all parameters, takes Richardson-extrapolated
   central differences and applies the docs/conventions.md §2 definitions literally.
2. mlp.toml through the interpreter is the MLP sampler, bit for bit; resmlp at ξ = 0 is the MLP.
3. Layer 2 of the residual MLP, exact at finite width (derived below by hand, independently of
   the engine and of the numerics): every statistic of the linear network, and K+G1, Θ+Θ1, V, A,
   B, D, F for tanh as Gaussian expectations over layer 1 (Gauss–Hermite quadrature here).
4. Per-layer widths n_ℓ = r_ℓ n, per-layer hyper-parameters, refusals and errors, the CLI.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from finite_differences import objects_by_finite_differences
from ntkdiagrams.cli import sample as sample_cli
from ntkdiagrams.errors import InputError, UnsupportedError
from ntkdiagrams.language.rulefile import RULES_DIR, load_rules, parse_rules
from ntkdiagrams.numerics.activations import parse_activation
from ntkdiagrams.sampling.interpreter import build_program, interpret_rules, scalar_value
from ntkdiagrams.sampling.model import ModelSpec
from ntkdiagrams.sampling.networks import (activation_derivatives, draw_ensemble, forward,
                                           layer_objects)
from ntkdiagrams.sampling.sampler import ALL_STATS, load_result, sample

MLP_TEXT = (RULES_DIR / "mlp.toml").read_text()
RES_TEXT = (RULES_DIR / "resmlp.toml").read_text()
MLP_RHS = 'rhs = "b(i) + sum(j, W(i, j) * sigma(z(j, a)))"'
assert MLP_RHS in MLP_TEXT


def _variant(text: str, old: str, new: str, name: str = "variant.toml"):
    assert old in text
    return parse_rules(text.replace(old, new), name)


def _ratio_rules():
    """mlp.toml with per-layer widths n_ℓ = r_ℓ n."""
    return _variant(MLP_TEXT, 'activation = "sigma"', 'activation = "sigma"\nwidth_ratio = "r"', "ratio.toml")


def _coef_rules():
    """mlp.toml with coefficients on its terms: z = gamma b + (1/2) Σ W σ(z) (hidden layers)."""
    text = MLP_TEXT.replace("[symbols.C_b]", '[symbols.gamma]\nlatex = "\\\\gamma"\n[symbols.C_b]')
    return _variant(text, MLP_RHS, 'rhs = "gamma * b(i) + sum(j, W(i, j) * sigma(z(j, a))) / 2"', "coef.toml")


# --------------------------------------------------------------------------- brute force

def _brute_force(layers, theta0, x, act):
    """Objects of ONE network by finite differences over its flat parameter vector.

    ``layers``: per layer dict(fan_in, width, bias (bool), cw, cb (coefficients of the weight and
    bias terms), xi (shortcut or None), lw, lb (learning rates of one weight / bias entry)).
    Layout of θ: per layer the weights (row-major), then the bias."""
    f = act.numpy(0)
    lam = np.concatenate([np.concatenate([np.full(d["width"] * d["fan_in"], d["lw"])]
                                         + ([np.full(d["width"], d["lb"])] if d["bias"] else []))
                          for d in layers])
    L, N, P = len(layers), x.shape[0], theta0.size
    assert lam.size == P

    def net(th):  # (M, P) -> (M, L, 2, N): neurons 0, 1 of every layer, the forward pass by hand
        M, pos, outs = th.shape[0], 0, []
        h = np.broadcast_to(x.T, (M,) + x.T.shape)
        z = None
        for k, d in enumerate(layers):
            w = th[:, pos:pos + d["width"] * d["fan_in"]].reshape(M, d["width"], d["fan_in"])
            pos += d["width"] * d["fan_in"]
            znew = d["cw"] * (w @ h)
            if d["bias"]:
                znew = znew + d["cb"] * th[:, pos:pos + d["width"], None]
                pos += d["width"]
            if d["xi"] is not None:
                znew = znew + d["xi"] * z[:, :d["width"]]
            z = znew
            outs.append(z[:, :2, :])
            h = f(z)
        return np.stack(outs, 1)

    return objects_by_finite_differences(net, theta0, lam, L, N)


def _per_layer(v, k):
    return v[k] if isinstance(v, list) else v


def _check_objects(model, layers_by_hand, net=1, count=2):
    """Sampled objects of network ``net`` of an ensemble drawn by the interpreter vs the brute force
    on the same parameters, read back in the coordinates of ``layers_by_hand`` (θ = drawn / coefficient)."""
    x = np.asarray(model.inputs, float)
    prog = build_program(model, x.shape[1])
    ens = prog.draw(np.random.default_rng(11), count, x)
    theta = []
    for k, d in enumerate(layers_by_hand):
        assert ens.W[k].shape[1:] == (d["width"], d["fan_in"])
        theta.append(ens.W[k][net].ravel() / d["cw"])
        assert (ens.b[k] is not None) == d["bias"]
        if d["bias"]:
            theta.append(ens.b[k][net] / d["cb"])
    ref = _brute_force(layers_by_hand, np.concatenate(theta), x, model.activation)
    fw = forward(ens, activation_derivatives(model.activation, 3))
    L = len(layers_by_hand)
    for ell in range(1, L + 1):
        got = layer_objects(ens, fw, ell, H=True, dH=True, ddIH=True, ddIIH=True)
        for key in ("z", "H", "dH", "ddIH", "ddIIH"):
            r = ref[ell - 1][key]
            scale = max(1.0, np.abs(r).max())
            np.testing.assert_allclose(got[key][net], r, rtol=1e-5, atol=1e-6 * scale,
                                       err_msg=f"layer {ell} {key}")
    for key in ("dH", "ddIH", "ddIIH"):  # the checks are not vacuous
        assert np.abs(ref[L - 1][key]).max() > 1e-2, key


def test_resmlp_objects_match_brute_force():
    """z^(ℓ+1) = ξ z^(ℓ) + b + W σ(z^(ℓ)) with per-layer ξ, C_W and λ_W."""
    x = np.random.default_rng(5).standard_normal((2, 2))
    n0, n = 2, 3
    params = {"xi": [0.0, 0.8, -0.6], "C_b": 0.3, "C_W": [1.0, 1.4, 0.9], "lambda_b": 0.7,
              "lambda_W": [1.3, 0.6, 1.1]}
    m = ModelSpec(parse_activation("tanh"), 3, n, inputs=x, rules="resmlp", params=params)
    widths = [n0, n, n, 2]
    layers = [dict(fan_in=widths[k], width=widths[k + 1], bias=True, cw=1.0, cb=1.0,
                   xi=None if k == 0 else params["xi"][k],
                   lw=params["lambda_W"][k] / widths[k], lb=params["lambda_b"]) for k in range(3)]
    _check_objects(m, layers)


def test_per_layer_width_bias_free_and_coefficients_match_brute_force():
    """Per-layer widths (r = (1.5, 1), n = 2: widths 2, 3, 2, 2), the bias-free MLP, and a map with
    coefficients on its terms (gamma b + Σ W σ / 2: absorbed into the parameters exactly)."""
    x = np.random.default_rng(6).standard_normal((2, 2))
    act = parse_activation("sin(z) + z/2")
    hp = {"C_b": 0.4, "C_W": 1.5, "lambda_b": 0.8, "lambda_W": 1.2}
    m = ModelSpec(act, 3, 2, inputs=x, rules=_ratio_rules(), params={**hp, "r": [1.5, 1.0]})
    widths = [2, 3, 2, 2]
    _check_objects(m, [dict(fan_in=widths[k], width=widths[k + 1], bias=True, cw=1.0, cb=1.0, xi=None,
                            lw=1.2 / widths[k], lb=0.8) for k in range(3)])
    m = ModelSpec(act, 3, 3, inputs=x, rules="mlp_nobias", params={"C_W": 1.5, "lambda_W": 1.2})
    widths = [2, 3, 3, 2]
    _check_objects(m, [dict(fan_in=widths[k], width=widths[k + 1], bias=False, cw=1.0, cb=1.0, xi=None,
                            lw=1.2 / widths[k], lb=0.0) for k in range(3)])
    m = ModelSpec(act, 3, 3, inputs=x, rules=_coef_rules(), params={**hp, "gamma": 0.6})
    _check_objects(m, [dict(fan_in=widths[k], width=widths[k + 1], bias=True, cw=1.0 if k == 0 else 0.5,
                            cb=1.0 if k == 0 else 0.6, xi=None, lw=1.2 / widths[k], lb=0.8) for k in range(3)])


# --------------------------------------------------------------------------- the MLP as a special case

X2 = np.array([[1.0, 0.5, -0.3], [-0.2, 1.2, 0.7]])
HP = {"C_b": 0.1, "C_W": 1.5, "lambda_b": 0.7, "lambda_W": 1.3}


def test_mlp_rule_file_is_the_mlp_sampler_bit_for_bit():
    act = parse_activation("tanh")
    m = ModelSpec(act, 3, 6, inputs=X2, rules="mlp", params=HP)
    prog = build_program(m, 3)
    a = prog.draw(np.random.default_rng(4), 5, X2)
    b = draw_ensemble(np.random.default_rng(4), 5, [3, 6, 6, 2], X2, 0.1, 1.5, 0.7, 1.3)
    for k in range(3):
        np.testing.assert_array_equal(a.W[k], b.W[k])
        np.testing.assert_array_equal(a.b[k], b.b[k])
        assert a.weight_rate(k) == b.weight_rate(k) and a.bias_rate(k) == b.bias_rate(k)
    _assert_same_objects(a, b, act, np.testing.assert_array_equal)
    # the sampler: rule-file names == the shorthands == the positional MLP
    r1 = sample(m, 90, seed=2, batches=3, stats="all")
    r2 = sample(ModelSpec(act, 3, 6, 0.1, 1.5, 0.7, 1.3, X2), 90, seed=2, batches=3, stats="all")
    r3 = sample(ModelSpec(act, 3, 6, cb=0.1, inputs=X2, params={"C_W": 1.5, "lambda_b": 0.7, "lambda_W": 1.3}),
                90, seed=2, batches=3, stats="all")
    # resmlp with ξ = 0 draws the same networks and adds 0 · z: the MLP again
    r4 = sample(ModelSpec(act, 3, 6, inputs=X2, rules="resmlp", params={**HP, "xi": 0.0}), 90, seed=2,
                batches=3, stats="all")
    for other in (r2, r3, r4):
        for la, lb in zip(r1["layers"], other["layers"]):
            for s in ALL_STATS:
                np.testing.assert_array_equal(la[s]["mean"], lb[s]["mean"])
                np.testing.assert_array_equal(la[s]["stderr"], lb[s]["stderr"])
    assert r1["meta"]["rules"] == "mlp" and r2["meta"]["rules"] == "mlp" and r4["meta"]["rules"] == "resmlp"
    assert r1["meta"]["params"] == r2["meta"]["params"] == HP
    assert r4["meta"]["params"] == {**HP, "xi": 0.0} and r4["meta"]["widths"] == [3, 6, 6, 2]


def _assert_same_objects(a, b, act, check) -> None:
    """z, H, dH, ddIH, ddIIH of layers 1-3 of ensembles a and b agree under ``check(x, y)``."""
    derivs = activation_derivatives(act, 3)
    fa, fb = forward(a, derivs), forward(b, derivs)
    for ell in (1, 2, 3):
        oa = layer_objects(a, fa, ell, H=True, dH=True, ddIH=True, ddIIH=True)
        ob = layer_objects(b, fb, ell, H=True, dH=True, ddIH=True, ddIIH=True)
        for key in oa:
            check(oa[key], ob[key])


def test_bias_free_is_the_mlp_with_zero_biases():
    """mlp_nobias networks == MLP networks with b = 0 and λ_b = 0, object by object."""
    act = parse_activation("gelu")
    m = ModelSpec(act, 3, 4, inputs=X2, rules="mlp_nobias", params={"C_W": 1.5, "lambda_W": 1.3})
    a = build_program(m, 3).draw(np.random.default_rng(1), 3, X2)
    assert all(bb is None for bb in a.b)
    b = type(a)(W=a.W, b=[np.zeros(w.shape[:2]) for w in a.W], x=X2, lb=0.0, lw=1.3)
    _assert_same_objects(a, b, act, lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-14, atol=1e-15))


# --------------------------------------------------------------------------- layer 2, exact

def _assert_within(mc, exact, k=4.5, name=""):
    mean, err = mc["mean"], mc["stderr"]
    assert mean.shape == np.shape(exact), name
    dev = np.abs(mean - exact)
    tol = k * err + 1e-9 * (1 + np.abs(exact))
    bad = dev > tol
    assert not bad.any(), (f"{name}: |MC - exact| > {k} stderr at {np.argwhere(bad)[:5].tolist()}; "
                           f"MC {mean[bad][:5]}, exact {np.asarray(exact)[bad][:5]}, stderr {err[bad][:5]}")


def _linear_layer2(K, Th, xi, cb, cw, lb, lw):
    """Layer 2 of the linear residual MLP, exact at any width (layer-2 hyper-parameters; K, Θ of
    layer 1).  With u = z^(1) ~ N(0, K) i.i.d. over neurons and Ĝ = Σ_j u_j u_jᵀ/n,
    z^(2)_i = ξ u_i + b_i + Σ_j W_ij u_j is conditionally Gaussian given u (mean ξ u_i, covariance
    C_b + C_W Ĝ, independent over i), and H^(2)_{ik} = δ_ik(λ_b + λ_W Ĝ) + Θ Σ_j (ξδ_ij + W_ij)(ξδ_kj + W_kj).
    With S_abcd = K_ac K_bd + K_ad K_bc (E[ĜĜ] − KK = S/n):
    K+G1 = (ξ² + C_W) K + C_b, Θ+Θ1 = λ_b + λ_W K + (ξ² + C_W) Θ, V = C_W (C_W + 2ξ²) S,
    A = λ_W² S, B = C_W (C_W + 2ξ²) Θ_ac Θ_bd, D = λ_W (ξ² + C_W) S, F = C_W (C_W + 2ξ²) Θ_ac K_bd,
    and from the second derivatives (z^(2) is bilinear in (W^(2), layer 1)): P = R = U = 0,
    Q = λ_W (ξ² + C_W) Θ_ac K_bd, S = λ_W (ξ² + C_W) Θ_ac Θ_bd, T = λ_W² Θ_ad K_bc.
    ξ = 0 gives tests/test_montecarlo.py's MLP values."""
    e = np.einsum
    S = e("ac,bd->abcd", K, K) + e("ad,bc->abcd", K, K)
    g = xi * xi + cw
    return {"K+G1": g * K + cb, "Theta+Theta1": lb + lw * K + g * Th, "V": cw * (cw + 2 * xi * xi) * S,
            "A": lw ** 2 * S, "B": cw * (cw + 2 * xi * xi) * e("ac,bd->abcd", Th, Th), "D": lw * g * S,
            "F": cw * (cw + 2 * xi * xi) * e("ac,bd->abcd", Th, K), "P": np.zeros((2,) * 4),
            "Q": lw * g * e("ac,bd->abcd", Th, K), "R": np.zeros((2,) * 4),
            "S": lw * g * e("ac,bd->abcd", Th, Th), "T": lw ** 2 * e("ad,bc->abcd", Th, K),
            "U": np.zeros((2,) * 4)}


def test_linear_resmlp_layer2_every_statistic_exact():
    """Per-layer hyper-parameters: layer 1 makes K, Θ; layer 2's values enter the formulas."""
    params = {"xi": [0.0, 0.9], "C_b": [0.3, 0.2], "C_W": [1.7, 0.8], "lambda_b": [0.8, 0.5],
              "lambda_W": [1.4, 1.1]}
    x = X2
    n0 = x.shape[1]
    K = 0.3 + 1.7 * x @ x.T / n0
    Th = 0.8 + 1.4 * x @ x.T / n0
    exact = _linear_layer2(K, Th, 0.9, 0.2, 0.8, 0.5, 1.1)
    m = ModelSpec(parse_activation("linear"), 2, 6, inputs=x, rules="resmlp", params=params)
    r = sample(m, 30000, stats="all", seed=3)
    lay2 = r["layers"][1]
    for s in ALL_STATS:
        _assert_within(lay2[s], exact[s], name=f"layer 2 {s}")
        if s not in ("P", "R", "U"):
            assert np.max(lay2[s]["stderr"]) < 0.3 * np.max(np.abs(exact[s])), s
    # the shortcut is seen: V, B, F with ξ = 0 (the MLP's C_W²) are excluded
    for s in ("V", "B", "F"):
        wrong = exact[s] * 0.8 / (0.8 + 2 * 0.81)
        assert np.max(np.abs(lay2[s]["mean"] - wrong) / lay2[s]["stderr"]) > 6, s
    np.testing.assert_allclose(r["layers"][0]["Theta+Theta1"]["mean"], Th, rtol=1e-12)
    assert r["meta"]["params"] == params and r["meta"]["fan_in"] == [3, 6]


def _gauss2(K, deg=48):
    """Nodes (2, P) of z ~ N(0, K) (K 2×2) and weights (P,) of a product Gauss–Hermite rule."""
    t, w = np.polynomial.hermite_e.hermegauss(deg)
    w = w / np.sqrt(2 * np.pi)
    g = np.stack([np.repeat(t, deg), np.tile(t, deg)])
    return np.linalg.cholesky(K) @ g, np.repeat(w, deg) * np.tile(w, deg)


def _layer2_gaussian(K, Th, xi, cb, cw, lb, lw, f=np.tanh, df=lambda u: 1 - np.tanh(u) ** 2):
    """Layer 2 of the residual MLP for σ = f (σ' = df), exact at any width, as Gaussian
    expectations ⟨·⟩ over u ~ N(0, K) (K, Θ of layer 1; z = u).  As in :func:`_linear_layer2`,
    conditioning on layer 1 (Ĝ = Σ σσᵀ/n, Ĝ' = Σ σ'σ'ᵀ/n; rows of W^(2) independent given u):
      K+G1 = ξ²K + C_b + C_W⟨σσ⟩,  Θ+Θ1 = λ_b + λ_W⟨σσ⟩ + Θ (ξ² + C_W⟨σ'σ'⟩),
      V = C_W² κ(σσ, σσ) + ξ²C_W [κ(zz, σσ) + κ(σσ, zz)],  κ(fg, hk)_abcd = ⟨f_a g_b h_c k_d⟩ − ⟨f_a g_b⟩⟨h_c k_d⟩,
      A = λ_W² κ(σσ, σσ) + λ_W C_W [Θ_cd κ(σσ, σ'σ') + Θ_ab κ(σ'σ', σσ)] + C_W² Θ_ab Θ_cd κ(σ'σ', σ'σ'),
      B_abcd = Θ_ac Θ_bd [C_W² ⟨σ'_a σ'_c σ'_b σ'_d⟩ + ξ²C_W (⟨σ'_c σ'_d⟩ + ⟨σ'_a σ'_b⟩)],
      D = λ_W [ξ² κ(σσ, zz) + C_W κ(σσ, σσ)] + C_W Θ_ab [ξ² κ(σ'σ', zz) + C_W κ(σ'σ', σσ)],
      F_abcd = Θ_ac [C_W² ⟨σ'_a σ'_c σ_b σ_d⟩ + ξ²C_W (⟨σ'_c σ_d z_b⟩ + ⟨σ'_a σ_b z_d⟩)].
    (ξ does not enter A; the MLP's layer 2 is ξ = 0.)"""
    z, w = _gauss2(K)
    s, d = f(z), df(z)
    E2 = lambda p, q: np.einsum("p,ap,bp->ab", w, p, q)  # noqa: E731
    E3 = lambda p, q, r: np.einsum("p,ap,bp,cp->abc", w, p, q, r)  # noqa: E731
    E4 = lambda p, q, r, t: np.einsum("p,ap,bp,cp,dp->abcd", w, p, q, r, t)  # noqa: E731
    kap = lambda p, q, r, t: E4(p, q, r, t) - np.multiply.outer(E2(p, q), E2(r, t))  # noqa: E731
    o, e = np.multiply.outer, np.einsum
    ss, dd = E2(s, s), E2(d, d)
    one, x2 = np.ones((2, 2)), xi * xi
    sdz = E3(d, s, z)  # ⟨σ'_p σ_q z_r⟩
    return {
        "K+G1": x2 * K + cb + cw * ss,
        "Theta+Theta1": lb + lw * ss + Th * (x2 + cw * dd),
        "V": cw * cw * kap(s, s, s, s) + x2 * cw * (kap(z, z, s, s) + kap(s, s, z, z)),
        "A": lw * lw * kap(s, s, s, s) + lw * cw * (o(one, Th) * kap(s, s, d, d) + o(Th, one) * kap(d, d, s, s))
             + cw * cw * o(Th, Th) * kap(d, d, d, d),
        "B": e("ac,bd->abcd", Th, Th) * (cw * cw * e("acbd->abcd", E4(d, d, d, d))
                                         + x2 * cw * (o(one, dd) + o(dd, one))),
        "D": lw * (x2 * kap(s, s, z, z) + cw * kap(s, s, s, s))
             + cw * o(Th, one) * (x2 * kap(d, d, z, z) + cw * kap(d, d, s, s)),
        "F": e("ac,bd->abcd", Th, one) * (cw * cw * e("acbd->abcd", E4(d, d, s, s))
                                          + x2 * cw * (e("cdb,a->abcd", sdz, np.ones(2))
                                                       + e("abd,c->abcd", sdz, np.ones(2)))),
    }


def test_the_two_hand_derivations_agree_for_a_linear_network():
    """:func:`_layer2_gaussian` at σ = z is :func:`_linear_layer2` (two derivations, one answer)."""
    K = np.array([[1.1, 0.3], [0.3, 0.8]])
    Th = np.array([[1.4, 0.5], [0.5, 1.2]])
    hp = (0.7, 0.1, 1.2, 0.6, 1.3)
    lin = _linear_layer2(K, Th, *hp)
    gau = _layer2_gaussian(K, Th, *hp, f=lambda u: u, df=np.ones_like)
    for s in gau:
        np.testing.assert_allclose(gau[s], lin[s], rtol=1e-10, atol=1e-12, err_msg=s)


def test_tanh_resmlp_layer2_exact():
    """Residual tanh MLP, ξ = 0.7, layer 2 (exact at finite n): K+G1, Θ+Θ1, V, A, B, D, F."""
    x = X2
    n0 = x.shape[1]
    xi, cb, cw, lb, lw = 0.7, 0.1, 1.2, 0.6, 1.3
    K = cb + cw * x @ x.T / n0
    Th = lb + lw * x @ x.T / n0
    exact = _layer2_gaussian(K, Th, xi, cb, cw, lb, lw)
    m = ModelSpec(parse_activation("tanh"), 2, 4, inputs=x, rules="resmlp",
                  params={"xi": xi, "C_b": cb, "C_W": cw, "lambda_b": lb, "lambda_W": lw})
    r = sample(m, 60000, stats="K,Theta,V,A,B,D,F", seed=7)
    lay2 = r["layers"][1]
    for s in ("K+G1", "Theta+Theta1", "V", "A", "B", "D", "F"):
        _assert_within(lay2[s], exact[s], name=f"layer 2 {s}")
        assert np.max(lay2[s]["stderr"]) < 0.2 * np.max(np.abs(exact[s])), s
    wrong = _layer2_gaussian(K, Th, 0.0, cb, cw, lb, lw)   # the MLP's layer 2 is excluded
    for s in ("K+G1", "Theta+Theta1", "V", "B", "D", "F"):
        assert np.max(np.abs(lay2[s]["mean"] - wrong[s]) / lay2[s]["stderr"]) > 6, s


def test_per_layer_widths_layer2():
    """Linear MLP with n_1 = r_1 n: layer 2's 1/n coefficients are in its fan-in n_1 (exact)."""
    x = X2
    n0 = x.shape[1]
    K = 0.3 + 1.7 * x @ x.T / n0
    Th = 0.8 + 1.4 * x @ x.T / n0
    exact = _linear_layer2(K, Th, 0.0, 0.3, 1.7, 0.8, 1.4)
    m = ModelSpec(parse_activation("linear"), 3, 4, 0.3, 1.7, 0.8, 1.4, x, rules=_ratio_rules(),
                  params={"r": [2.0, 0.5]})
    r = sample(m, 40000, stats="K,Theta,V,A,B,D,F", seed=8)
    assert r["meta"]["fan_in"] == [3, 8, 2] and r["meta"]["widths"] == [3, 8, 2, 2]
    assert r["meta"]["params"]["r"] == [2.0, 0.5]
    for s in ("K+G1", "Theta+Theta1", "V", "A", "B", "D", "F"):
        _assert_within(r["layers"][1][s], exact[s], name=f"layer 2 {s}")
    # the coefficients are those of 1/n_1 = 1/8, not of 1/n = 1/4 (which would halve them)
    lay = r["layers"][1]
    assert np.max(np.abs(lay["B"]["mean"] - exact["B"] / 2) / lay["B"]["stderr"]) > 6


# --------------------------------------------------------------------------- refusals and errors

@pytest.mark.parametrize("rhs,msg", [
    ("b(i) + sum(j, W(i, j) * z(j, a))", "factor z"),
    ("b(i) * b(i) + sum(j, W(i, j) * sigma(z(j, a)))", "term b\\(i\\)\\*\\*2 is not one of them"),
    ("b(i) + sum(j, W(i, j) * sigma(z(j, a))) + sum(j, W(i, j) * sigma(z(j, a)) * sigma(z(j, a)))", "factor"),
    ("b(i) + sigma(z(i, a)) + sum(j, W(i, j) * sigma(z(j, a)))", "not one of them"),
    ("b(i)", "0 dense terms"),
    ("b(i) + 1 + sum(j, W(i, j) * sigma(z(j, a)))", "term 1 is not a coefficient times one"),
])
def test_unknown_terms_are_refused(rhs, msg):
    rules = _variant(MLP_TEXT, MLP_RHS, f'rhs = "{rhs}"')
    with pytest.raises(UnsupportedError, match=msg) as exc:
        interpret_rules(rules)
    assert "interpreter knows the terms" in str(exc.value) and "layer_map.z" in str(exc.value)


@pytest.mark.parametrize("params,msg", [
    ({"C_b": 0.0, "C_W": 1.0, "lambda_b": 1.0, "lambda_W": 1.0}, "symbol xi has no value"),
    ({"xi": 1.0, "C_b": 0.0, "C_W": 1.0, "lambda_b": 1.0, "lambda_W": 1.0, "gamma": 2.0}, "gamma"),
    ({"xi": [1.0, 2.0], "C_b": 0.0, "C_W": 1.0, "lambda_b": 1.0, "lambda_W": 1.0}, "2 per-layer values"),
    ({"xi": 1.0, "C_b": 0.0, "C_W": [1.0, -1.0, 1.0], "lambda_b": 1.0, "lambda_W": 1.0}, "variance"),
    ({"xi": "a", "C_b": 0.0}, "number"),
])
def test_bad_params_are_input_errors(params, msg):
    m = ModelSpec(parse_activation("tanh"), 3, 4, inputs=X2, rules="resmlp", params=params)
    with pytest.raises(InputError, match=msg):
        sample(m, 30, batches=3)


def test_missing_mlp_names_take_evaluates_defaults():
    """C_b = 0, C_W = 1, λ_b = λ_W = 1 where not given, as in evaluate (numerics.hyperparameters)."""
    full = {"xi": 0.7, "C_b": 0.0, "C_W": 1.0, "lambda_b": 1.0, "lambda_W": 1.0}
    a = sample(ModelSpec(parse_activation("tanh"), 3, 4, inputs=X2, rules="resmlp", params=full), 30, batches=3)
    b = sample(ModelSpec(parse_activation("tanh"), 3, 4, inputs=X2, rules="resmlp", params={"xi": 0.7}), 30,
               batches=3)
    for la, lb in zip(a["layers"], b["layers"]):
        np.testing.assert_array_equal(la["Theta+Theta1"]["mean"], lb["Theta+Theta1"]["mean"])


def test_shorthands_widths_and_rules_errors():
    act = parse_activation("tanh")
    with pytest.raises(InputError, match="disagree"):
        sample(ModelSpec(act, 2, 4, cw=1.0, inputs=X2, params={"C_W": 2.0}), 30, batches=3)
    with pytest.raises(InputError, match="C_b"):  # no bias in this rule file
        sample(ModelSpec(act, 2, 4, cb=0.1, cw=1.0, lw=1.0, inputs=X2, rules="mlp_nobias"), 30, batches=3)
    with pytest.raises(InputError, match="give r"):
        sample(ModelSpec(act, 2, 4, 0.0, 1.0, 1.0, 1.0, X2, rules=_ratio_rules()), 30, batches=3)
    with pytest.raises(InputError, match="not a width"):
        sample(ModelSpec(act, 2, 4, 0.0, 1.0, 1.0, 1.0, X2, rules=_ratio_rules(), params={"r": 0.3}), 30, batches=3)
    with pytest.raises(Exception, match="no rule file"):
        sample(ModelSpec(act, 2, 4, 0.0, 1.0, 1.0, 1.0, X2, rules="nonesuch"), 30, batches=3)


def test_scalar_value():
    import sympy as sp
    a, n = sp.symbols("a n")
    assert scalar_value(a / n, {"a": 1.7, "n": 6}) == 1.7 / 6
    assert scalar_value(a ** 2 / (2 * n) + 1, {"a": 3.0, "n": 3}) == 9.0 / 6 + 1
    with pytest.raises(InputError, match="symbol a has no value"):
        scalar_value(a + 1, {})


# --------------------------------------------------------------------------- CLI

def _parse(argv):
    parser = argparse.ArgumentParser(prog="ntkdiagrams")
    sub = parser.add_subparsers(dest="command")
    sample_cli.add_parser(sub)
    return parser.parse_args(argv)


def test_cli_rules_and_params(tmp_path, capsys):
    out = tmp_path / "mc.json"
    args = _parse(["sample", "--rules", "resmlp", "--param", "xi=1", "--param", "C_W=0.6,0.5", "--depth", "2",
                   "--width", "4", "--samples", "60", "--batches", "3", "--stats", "K,V", "--quiet",
                   "--out", str(out)])
    assert sample_cli.run(args) == 0, capsys.readouterr().err
    meta = load_result(str(out))["meta"]
    assert meta["rules"] == "resmlp"
    assert meta["params"] == {"xi": 1.0, "C_W": [0.6, 0.5], "C_b": 0.0, "lambda_b": 1.0, "lambda_W": 1.0}
    # bias-free: the MLP defaults of --cb/--lb do not apply; an explicit --cb is an error
    args = _parse(["sample", "--rules", "mlp_nobias", "--depth", "2", "--width", "4", "--samples", "60",
                   "--batches", "3", "--stats", "K", "--quiet", "--out", str(out)])
    assert sample_cli.run(args) == 0, capsys.readouterr().err
    assert load_result(str(out))["meta"]["params"] == {"C_W": 1.0, "lambda_W": 1.0}
    for bad, msg in ((["--rules", "mlp_nobias", "--cb", "0.1"], "C_b"), (["--rules", "resmlp"], "xi"),
                     (["--param", "C_W"], "NAME=VALUE"), (["--param", "C_W=x"], "number"),
                     (["--rules", "resmlp", "--param", "xi=1", "--param", "xi=2"], "twice")):
        args = _parse(["sample", "--depth", "2", "--width", "4", "--samples", "60", "--batches", "3",
                       "--quiet", "--out", str(tmp_path / "bad.json")] + bad)
        assert sample_cli.run(args) == 2
        err = capsys.readouterr().err
        assert "error" in err and msg in err, (bad, err)
    assert not (tmp_path / "bad.json").exists()
