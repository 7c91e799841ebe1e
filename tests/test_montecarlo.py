"""Tests of the Monte Carlo sampler (ntkdiagrams.sampling.sampler, ntkdiagrams.sampling.networks).

1. Per-network objects (z, H, dH, ddIH, ddIIH) against a brute force that flattens all
   parameters and takes central finite differences (Richardson-extrapolated) of the network
   function, then applies the docs/conventions.md §2 definitions literally (sums over all μ, ν, ρ
   with the diagonal learning rates).
2. Estimators against closed forms: every statistic of a linear network at layer 2 (exact
   at finite width), G/NTK/V of a deep linear network at layer 3 (exact Wishart recursion),
   and ReLU at criticality (V = 5(ℓ−1)K², docs/conventions.md §5).
3. Reproducibility, partial results on interrupt, files, and clean errors on bad input.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest

from finite_differences import objects_by_finite_differences
from ntkdiagrams.numerics.activations import parse_activation
from ntkdiagrams.sampling.model import ModelSpec
from ntkdiagrams.errors import InputError
from ntkdiagrams.cli import sample as sample_cli
from ntkdiagrams.sampling.sampler import ALL_STATS, SAMPLED_SUMS, load_result, parse_stats, sample, save_result
from ntkdiagrams.sampling.networks import (Ensemble, activation_derivatives, forward,
                                             layer_objects)


# --------------------------------------------------------------------------- brute force

def _brute_force(W, b, x, act, lb, lw):
    """Objects of ONE network by finite differences over the flat parameter vector."""
    f = act.numpy(0)
    shapes = [(w.shape, bb.shape) for w, bb in zip(W, b)]
    theta0 = np.concatenate([np.concatenate([w.ravel(), bb.ravel()]) for w, bb in zip(W, b)])
    lam = np.concatenate([np.concatenate([np.full(w.size, lw / w.shape[1]), np.full(bb.size, lb)])
                          for w, bb in zip(W, b)])
    L, N = len(W), x.shape[0]

    def net(th):  # (M, P) -> (M, L, 2, N): neurons 0, 1 of every layer
        M, pos, h, outs = th.shape[0], 0, np.broadcast_to(x.T, (th.shape[0],) + x.T.shape), []
        for ws, bs in shapes:
            w = th[:, pos:pos + ws[0] * ws[1]].reshape(M, *ws)
            pos += ws[0] * ws[1]
            bb = th[:, pos:pos + bs[0]]
            pos += bs[0]
            zz = w @ h + bb[:, :, None]
            outs.append(zz[:, :2, :])
            h = f(zz)
        return np.stack(outs, 1)

    return objects_by_finite_differences(net, theta0, lam, L, N)


@pytest.mark.parametrize("activation,n0,n,L,cb,lb,lw", [
    ("tanh", 3, 3, 3, 0.25, 0.7, 1.3),
    ("sin(z) + z/2", 2, 4, 2, 0.5, 1.0, 0.6),
])
def test_objects_match_brute_force(activation, n0, n, L, cb, lb, lw):
    rng = np.random.default_rng(7)
    N, C = 2, 2
    widths = [n0] + [n] * (L - 1) + [2]
    W = [rng.standard_normal((C, widths[k + 1], widths[k])) * np.sqrt(1.5 / widths[k])
         for k in range(L)]
    b = [rng.standard_normal((C, widths[k + 1])) * np.sqrt(cb) for k in range(L)]
    x = rng.standard_normal((N, n0))
    act = parse_activation(activation)
    ens = Ensemble(W=W, b=b, x=x, lb=lb, lw=lw)
    fw = forward(ens, activation_derivatives(act, 3))
    net = 1  # the second network of the ensemble
    ref = _brute_force([w[net] for w in W], [bb[net] for bb in b], x, act, lb, lw)
    for ell in range(1, L + 1):
        got = layer_objects(ens, fw, ell, H=True, dH=True, ddIH=True, ddIIH=True)
        for key in ("z", "H", "dH", "ddIH", "ddIIH"):
            r = ref[ell - 1][key]
            scale = max(1.0, np.abs(r).max())
            np.testing.assert_allclose(got[key][net], r, rtol=1e-5, atol=1e-6 * scale,
                                       err_msg=f"layer {ell} {key}")
        if ell >= 2:  # the checks are not vacuous
            assert np.abs(ref[ell - 1]["ddIIH"]).max() > 1e-2
            assert np.abs(ref[ell - 1]["dH"]).max() > 1e-2
    # ddIH of the deepest layer is non-trivial for these activations
    assert np.abs(ref[L - 1]["ddIH"]).max() > 1e-2


def test_delta_derivatives_are_zero_pointwise():
    relu = activation_derivatives(parse_activation("relu"), 3)
    zz = np.array([-1.0, 0.3, 2.0])
    np.testing.assert_array_equal(relu[1](zz), [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(relu[2](zz), 0.0)
    np.testing.assert_array_equal(relu[3](zz), 0.0)
    mixed = activation_derivatives(parse_activation("Max(0, z) + z**2"), 2)
    np.testing.assert_allclose(mixed[2](zz), 2.0)  # δ(z) dropped, the smooth part kept


# --------------------------------------------------------------------------- closed forms

def _model(act, depth, width, x, cb=0.0, cw=1.0, lb=1.0, lw=1.0):
    return ModelSpec(activation=parse_activation(act), depth=depth, width=width, cb=cb, cw=cw,
                     lb=lb, lw=lw, inputs=np.asarray(x, float))


def _assert_within(mc, exact, k=4.5, name=""):
    mean, err = mc["mean"], mc["stderr"]
    assert mean.shape == np.shape(exact), name
    dev = np.abs(mean - exact)
    tol = k * err + 1e-9 * (1 + np.abs(exact))
    bad = dev > tol
    assert not bad.any(), (f"{name}: |MC - exact| > {k} stderr at {np.argwhere(bad)[:5].tolist()}; "
                           f"MC {mean[bad][:5]}, exact {np.asarray(exact)[bad][:5]}, "
                           f"stderr {err[bad][:5]}")


X2 = np.array([[1.0, 0.5, -0.3], [-0.2, 1.2, 0.7]])


def test_linear_layer2_every_statistic_exact():
    """Two-layer linear network: every 1/n coefficient at layer 2 is exact at finite n.

    With K, Θ the layer-1 kernels (K = C_b + C_W x·x/n0, Θ = λ_b + λ_W x·x/n0):
    V[a,b,c,d] = C_W²(K_ac K_bd + K_ad K_bc), A = λ_W²(K_ac K_bd + K_ad K_bc),
    B[a,b,c,d] = C_W² Θ_ac Θ_bd, D = λ_W C_W (K_ac K_bd + K_ad K_bc), F[a,b,c,d] = C_W² Θ_ac K_bd,
    P = 0, Q[a,b,c,d] = λ_W C_W Θ_ac K_bd, R = 0, S[a,b,c,d] = λ_W C_W Θ_ac Θ_bd,
    T[a,b,c,d] = λ_W² Θ_ad K_bc, U = 0 (derived by hand from the forward equations).
    The asymmetric ones (B, F, Q, S, T) pin down the storage order of docs/conventions.md §3."""
    cb, cw, lb, lw = 0.3, 1.7, 0.8, 1.4
    x = X2
    n0 = x.shape[1]
    K = cb + cw * x @ x.T / n0
    Th = lb + lw * x @ x.T / n0
    r = sample(_model("linear", 2, 6, x, cb, cw, lb, lw), 9000, stats="all", seed=3)
    lay1, lay2 = r["layers"]
    e = np.einsum
    KK = e("ac,bd->abcd", K, K) + e("ad,bc->abcd", K, K)
    exact = {
        "K+G1": cb + cw * K, "Theta+Theta1": lb + lw * K + cw * Th,
        "V": cw ** 2 * KK, "A": lw ** 2 * KK, "B": cw ** 2 * e("ac,bd->abcd", Th, Th),
        "D": lw * cw * KK, "F": cw ** 2 * e("ac,bd->abcd", Th, K),
        "P": np.zeros((2,) * 4), "Q": lw * cw * e("ac,bd->abcd", Th, K), "R": np.zeros((2,) * 4),
        "S": lw * cw * e("ac,bd->abcd", Th, Th), "T": lw ** 2 * e("ad,bc->abcd", Th, K),
        "U": np.zeros((2,) * 4)}
    for s in ALL_STATS:
        _assert_within(lay2[s], exact[s], name=f"layer 2 {s}")
        if s not in ("P", "R", "U"):  # meaningful: relative error bars well below 30%
            assert np.max(lay2[s]["stderr"]) < 0.3 * np.max(np.abs(exact[s])), s
    # Layer 1: G = K and NTK = Θ exactly (no fluctuations); dNTK/ddNTK vanish identically.
    np.testing.assert_allclose(lay1["Theta+Theta1"]["mean"], Th, rtol=1e-12)
    np.testing.assert_allclose(lay1["Theta+Theta1"]["stderr"], 0, atol=1e-12)
    _assert_within(lay1["K+G1"], K, name="layer 1 G")
    for s in ("A", "B", "D", "F", "P", "Q", "R", "S", "T", "U"):
        np.testing.assert_allclose(lay1[s]["mean"], 0, atol=1e-10)


def test_deep_linear_layer3_exact():
    """Deep linear network, C_b = 0: G, NTK and V at layer 3 from exact finite-n recursions
    (Wishart moments of the Gram matrix Γ = Zᵀ Z of each hidden layer)."""
    cw, lb, lw, n = 1.3, 0.5, 1.1, 5
    x = X2
    K1 = cw * x @ x.T / x.shape[1]
    Th1 = lb + lw * x @ x.T / x.shape[1]
    K2, K3 = cw * K1, cw * cw * K1
    Th2 = lb + lw * K1 + cw * Th1
    Th3 = lb + lw * K2 + cw * Th2
    e = np.einsum
    M4 = n * n * e("ab,cd->abcd", K1, K1) + n * (e("ac,bd->abcd", K1, K1) + e("ad,bc->abcd", K1, K1))
    M4 = cw ** 2 * (M4 + (M4.transpose(0, 2, 1, 3) + M4.transpose(0, 2, 3, 1)) / n)  # E[Γ2 ⊗ Γ2]
    V3 = n * ((cw / n) ** 2 * M4 - e("ab,cd->abcd", K3, K3))
    r = sample(_model("linear", 3, n, x, 0.0, cw, lb, lw), 20000, stats=("K", "Theta", "V"), seed=5)
    lay3 = r["layers"][2]
    _assert_within(lay3["K+G1"], K3, name="G3")
    _assert_within(lay3["Theta+Theta1"], Th3, name="NTK3")
    _assert_within(lay3["V"], V3, name="V3")
    # V3 differs from its leading order 2(K_ac K_bd + K_ad K_bc) by a 1/n term the test resolves
    assert np.max(lay3["V"]["stderr"]) < 0.15 * np.max(np.abs(V3))


@pytest.mark.slow
def test_relu_criticality_four_point_vertex():
    """ReLU, C_b = 0, C_W = 2, one input: K^(ℓ) = K^(1), V^(ℓ) = 5(ℓ−1)K² (layer 2 exact,
    layer 3 up to O(1/n) = O(1/64))."""
    x = np.array([[1.0, -0.5, 2.0]])
    K = 2 * float((x @ x.T)[0, 0]) / 3
    r = sample(_model("relu", 3, 64, x, 0.0, 2.0), 100_000, stats=("K", "Theta1", "V"), seed=11)
    # Scale invariance: Θ1_{αα} = 0 (docs/conventions.md §5), so E[H_αα] = Θ up to O(1/n²), with
    # Θ^(ℓ+1) = λ_b + λ_W K/2 + Θ^(ℓ) at criticality (⟨σσ⟩ = K/2, C_W⟨σ'σ'⟩ = 1).
    theta = 1.0 + float((x @ x.T)[0, 0]) / 3
    for ell in (1, 2, 3):
        lay = r["layers"][ell - 1]
        _assert_within(lay["K+G1"], np.full((1, 1), K), k=4, name=f"G{ell}")
        _assert_within(lay["Theta+Theta1"], np.full((1, 1), theta), k=4, name=f"NTK{ell}")
        theta = 1.0 + K / 2 + theta
        if ell > 1:
            _assert_within(lay["V"], np.full((1,) * 4, 5 * (ell - 1) * K * K), k=4, name=f"V{ell}")
            # error bar small enough that V = 2.5(ℓ−1)K² or 10(ℓ−1)K² would fail
            assert lay["V"]["stderr"].item() < 0.12 * 5 * (ell - 1) * K * K


# --------------------------------------------------------------------------- API behaviour

def test_reproducible_and_chunk_independent():
    m = _model("tanh", 3, 6, X2, 0.1, 1.5)
    a = sample(m, 300, seed=4, stats="K,Theta,V,P,S", batches=3, chunk=7)
    b = sample(m, 300, seed=4, stats="K,Theta,V,P,S", batches=3, chunk=7)
    c = sample(m, 300, seed=4, stats="K,Theta,V,P,S", batches=3, chunk=64)
    d = sample(m, 300, seed=5, stats="K,Theta,V,P,S", batches=3, chunk=7)
    for lay_a, lay_b, lay_c, lay_d in zip(a["layers"], b["layers"], c["layers"], d["layers"]):
        for s in ("K+G1", "Theta+Theta1", "V", "P", "S"):
            np.testing.assert_array_equal(lay_a[s]["mean"], lay_b[s]["mean"])
            np.testing.assert_allclose(lay_a[s]["mean"], lay_c[s]["mean"], rtol=1e-9, atol=1e-12)
            if lay_a["layer"] > 1:
                assert not np.allclose(lay_a[s]["mean"], lay_d[s]["mean"])
    meta = a["meta"]
    assert meta["complete"] and meta["samples"] == 300 and meta["batches"] == 3
    assert meta["seed"] == 4 and meta["fan_in"] == [3, 6, 6]


def test_only_requested_stats_and_shapes():
    r = sample(_model("tanh", 2, 4, X2), 60, stats=("G1", "B"), batches=3)
    for lay in r["layers"]:
        assert set(lay) == {"layer", "K+G1", "B"}
        assert lay["K+G1"]["mean"].shape == (2, 2) and lay["B"]["stderr"].shape == (2, 2, 2, 2)
    assert r["meta"]["stats"] == ["K+G1", "B"]
    assert r["meta"]["estimates"] == {"K+G1": "E[z_{i;a1} z_{i;a2}] = K + G1/n + O(1/n^2)"}
    assert parse_stats("all") == ALL_STATS


def test_stat_names_are_the_rule_file_names():
    """evaluate's names request what estimates them: K, G1 -> K+G1 (E[zz] = K + G1/n), Theta,
    Theta1 -> Theta+Theta1 (E[H] = Θ + Θ1/n); G and NTK are deprecated aliases."""
    assert parse_stats("V,K") == ("K+G1", "V")
    assert parse_stats("K,G1,Theta,Theta1,V,A") == ("K+G1", "Theta+Theta1", "V", "A")
    assert parse_stats(["Theta1"]) == parse_stats(["Theta+Theta1"]) == ("Theta+Theta1",)
    assert {k: v for k, v in SAMPLED_SUMS.items()} == {"K+G1": ("K", "G1"), "Theta+Theta1": ("Theta", "Theta1")}
    with pytest.warns(DeprecationWarning, match="deprecated"):
        assert parse_stats("G,NTK") == ("K+G1", "Theta+Theta1")
    with pytest.raises(InputError, match="known: K, G1, Theta, Theta1, V"):
        parse_stats("K,Z")


def test_interrupt_returns_finished_batches():
    calls = {"n": 0}

    def progress(done, total, elapsed):
        calls["n"] += 1
        if done >= 25:
            raise KeyboardInterrupt

    m = _model("tanh", 2, 4, X2)
    r = sample(m, 100, batches=10, stats="K", chunk=5, progress=progress, allow_partial=True)
    assert r["meta"]["complete"] is False
    assert r["meta"]["batches"] == 2 and r["meta"]["samples"] == 20
    with pytest.raises(KeyboardInterrupt):
        sample(m, 100, batches=10, stats="K", chunk=5, progress=progress)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(width=0), "width"),
    (dict(width=1), "width"),
    (dict(inputs=np.array([[1.0, np.nan]])), "NaN"),
    (dict(cw=-1.0), "variance"),
])
def test_bad_model_is_input_error(kwargs, msg):
    base = dict(activation=parse_activation("tanh"), depth=2, width=4, cb=0.0, cw=1.0, lb=1.0,
                lw=1.0, inputs=X2)
    base.update(kwargs)
    with pytest.raises(InputError, match=msg):
        sample(ModelSpec(**base), 100)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(samples=10, batches=30), "samples"),
    (dict(samples=100, batches=1), "batches"),
    (dict(samples=100, stats="G,XX"), "unknown"),
    (dict(samples=100, chunk=0), "chunk"),
    (dict(samples=100.5), "integer"),
])
def test_bad_arguments_are_input_errors(kwargs, msg):
    with pytest.raises(InputError, match=msg):
        sample(_model("tanh", 2, 4, X2), **kwargs)


# --------------------------------------------------------------------------- CLI and files

def _parse(argv):
    parser = argparse.ArgumentParser(prog="ntkdiagrams")
    sub = parser.add_subparsers(dest="command")
    sample_cli.add_parser(sub)
    return parser.parse_args(argv)


@pytest.mark.parametrize("ext", ["json", "npz"])
def test_cli_writes_and_reads_back(tmp_path, ext, capsys):
    out = tmp_path / f"mc.{ext}"
    args = _parse(["sample", "--activation", "tanh", "--depth", "2", "--width", "4",
                   "--random", "2,3", "--samples", "90", "--batches", "3", "--stats", "K,G1,Theta,V",
                   "--out", str(out)])
    assert args.func is sample_cli.run
    assert sample_cli.run(args) == 0
    res = load_result(str(out))
    assert res["meta"]["complete"] is True and res["meta"]["samples"] == 90
    assert [lay["layer"] for lay in res["layers"]] == [1, 2]
    assert res["layers"][1]["V"]["mean"].shape == (2, 2, 2, 2)
    if ext == "json":
        doc = json.loads(out.read_text())
        assert isinstance(doc["layers"][0]["K+G1"]["mean"], list)
        assert set(doc["layers"][0]) == {"layer", "K+G1", "Theta+Theta1", "V"}
    else:
        with np.load(out) as f:
            assert "layer2/V/mean" in f.files and "meta" in f.files


@pytest.mark.parametrize("argv,msg", [
    (["--width", "0"], "width"),
    (["--stats", "K,Z"], "unknown"),
    (["--samples", "2"], "samples"),
])
def test_cli_bad_input_exit_2_nothing_written(tmp_path, capsys, argv, msg):
    out = tmp_path / "mc.json"
    args = _parse(["sample", "--depth", "2", "--width", "4", "--samples", "60", "--batches", "3",
                   "--out", str(out)] + argv)
    assert sample_cli.run(args) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "error" in err and msg in err


def test_cli_deprecated_names_and_help(tmp_path, capsys):
    out = tmp_path / "mc.json"
    args = _parse(["sample", "--depth", "1", "--samples", "60", "--batches", "3", "--stats", "G,NTK",
                   "--quiet", "--out", str(out)])
    assert sample_cli.run(args) == 0
    assert "deprecated" in capsys.readouterr().err
    assert set(load_result(str(out))["layers"][0]) == {"layer", "K+G1", "Theta+Theta1"}
    with pytest.raises(SystemExit):
        _parse(["sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "K,G1,Theta,Theta1,V,A,B,D,F" in text and "Deprecated: G (= K+G1) and NTK (= Theta+Theta1)" in text


def test_cli_nan_inputs_and_bad_extension(tmp_path, capsys):
    bad = tmp_path / "x.npy"
    np.save(bad, np.array([[1.0, np.nan]]))
    args = _parse(["sample", "--inputs", str(bad), "--samples", "60", "--batches", "3",
                   "--out", str(tmp_path / "mc.json")])
    assert sample_cli.run(args) == 2
    assert "NaN" in capsys.readouterr().err
    args = _parse(["sample", "--samples", "60", "--batches", "3", "--out", str(tmp_path / "mc.txt")])
    assert sample_cli.run(args) == 2
    assert os.listdir(tmp_path) == ["x.npy"]


def test_save_result_nan_as_null(tmp_path):
    r = sample(_model("tanh", 2, 4, X2), 60, stats="K", batches=3)
    r["layers"][0]["K+G1"]["stderr"][0, 0] = np.nan
    save_result(r, str(tmp_path / "a.json"))
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["layers"][0]["K+G1"]["stderr"][0][0] is None
    back = load_result(str(tmp_path / "a.json"))
    assert np.isnan(back["layers"][0]["K+G1"]["stderr"][0, 0])


def test_physics_forward_equations_hold():
    """The NTK and dNTK forward equations written in docs/conventions.md §2 (full width, full neuron
    indices) reproduce the objects computed here from the definitions."""
    rng = np.random.default_rng(3)
    n0, n, N, lb, lw = 3, 4, 2, 0.6, 1.3
    act = parse_activation("tanh")
    s0, s1, s2 = (act.numpy(k) for k in range(3))
    x = rng.standard_normal((N, n0))
    W1 = rng.standard_normal((n, n0)) / np.sqrt(n0)
    W2 = rng.standard_normal((n, n)) * np.sqrt(1.5 / n)
    W3 = rng.standard_normal((2, n)) * np.sqrt(1.5 / n)
    b1, b2, b3 = (rng.standard_normal(k) * 0.3 for k in (n, n, 2))
    z1 = W1 @ x.T + b1[:, None]
    H1 = np.einsum("ij,ab->ijab", np.eye(n), lb + lw / n0 * x @ x.T)
    dH1 = np.zeros((n,) * 3 + (N,) * 3)

    def step(z, H, dH, W, eye):
        sg, sp, spp = s0(z), s1(z), s2(z)
        m = z.shape[0]
        Hn = (np.einsum("ij,ab->ijab", eye, lb + lw / m * sg.T @ sg)
              + np.einsum("ij,kl,ja,lb,jlab->ikab", W, W, sp, sp, H))
        dHn = (lw / m * np.einsum("ik,ja,jb,lm,mc,jmac->iklabc", eye, sp, sg, W, sp, H)
               + lw / m * np.einsum("il,ja,jc,km,mb,jmab->iklabc", eye, sp, sg, W, sp, H)
               + np.einsum("ij,km,lp,mb,pc,ja,jmab,jpac->iklabc", W, W, W, sp, sp, spp, H, H)
               + np.einsum("ij,km,lp,mb,pc,ja,jmpabc->iklabc", W, W, W, sp, sp, sp, dH))
        return Hn, dHn

    z2 = W2 @ s0(z1) + b2[:, None]
    H2, dH2 = step(z1, H1, dH1, W2, np.eye(n))
    H3, dH3 = step(z2, H2, dH2, W3, np.eye(2))
    ens = Ensemble(W=[W1[None], W2[None], W3[None]], b=[b1[None], b2[None], b3[None]], x=x,
                   lb=lb, lw=lw)
    fw = forward(ens, activation_derivatives(act, 2))
    for ell, (H, dH) in ((2, (H2, dH2)), (3, (H3, dH3))):
        got = layer_objects(ens, fw, ell, H=True, dH=True)
        np.testing.assert_allclose(got["H"][0], H[:2, :2], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got["dH"][0], dH[:2, :2, :2], rtol=1e-10, atol=1e-12)


def test_restricted_ddIH_patterns_match_full():
    rng = np.random.default_rng(2)
    C, N, n = 3, 2, 5
    W = [rng.standard_normal((C, n, 3)), rng.standard_normal((C, n, n)) / 2,
         rng.standard_normal((C, 2, n)) / 2]
    b = [rng.standard_normal((C, n)), rng.standard_normal((C, n)), rng.standard_normal((C, 2))]
    ens = Ensemble(W=W, b=b, x=rng.standard_normal((N, 3)), lb=0.5, lw=1.5)
    fw = forward(ens, activation_derivatives(parse_activation("gelu"), 3))
    full = layer_objects(ens, fw, 3, ddIH=True)["ddIH"]
    part = layer_objects(ens, fw, 3, ddIH=True, ddIH_neurons=[(0, 1, 1), (1, 0, 0)])["ddIH"]
    for i in (0, 1):
        np.testing.assert_allclose(part[:, :, i, 1 - i, 1 - i], full[:, :, i, 1 - i, 1 - i],
                                   rtol=1e-12, atol=1e-12)
    assert np.isnan(part[:, :, 0, 0, 0]).all() and np.isfinite(full).all()
