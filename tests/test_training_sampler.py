"""Networks trained by full-batch gradient descent (ntkdiagrams.sampling.training): the update is the
Taylor expansion of docs/conventions.md §7 in the per-network objects of ntkdiagrams.sampling.networks
(an independent code path), reproducibility, convergence, errors."""
from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest

from ntkdiagrams.errors import InputError, NumericsError
from ntkdiagrams.numerics.activations import parse_activation
from ntkdiagrams.sampling.interpreter import build_program
from ntkdiagrams.sampling.model import ModelSpec
from ntkdiagrams.sampling.networks import activation_derivatives, forward, layer_objects
from ntkdiagrams.sampling.sampler import sample
from ntkdiagrams.sampling.training import (TrainedEnsemble, empirical_ntk, stable_step, train_ensemble,
                                           train_networks, train_step)

TANH = parse_activation("tanh")
NTR = 2   # training inputs; the third input is a test input


def _setup(act=TANH, rules=None, params=None, depth=3, width=5, count=3, seed=0):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 2))
    y = rng.normal(size=(NTR, 2))
    kw = dict(params=params, rules=rules) if rules else dict(cb=0.2, cw=1.6, lb=0.7, lw=1.3)
    m = ModelSpec(act, depth=depth, width=width, inputs=x, **kw)
    ens = build_program(m, 2).draw(np.random.default_rng(seed), count, x)
    return ens, x, y


def _objects(ens, act, **which):
    order = 3 if which.get("ddIH") else 2 if which.get("dH") or which.get("ddIIH") else 1
    return layer_objects(ens, forward(ens, activation_derivatives(act, order)), ens.depth, **which)


def _stepped(ens, y, eta, act, n_out=2):
    e = copy.deepcopy(ens)
    if n_out == 1:
        e.W[-1] = e.W[-1][:, :1].copy()
        e.b[-1] = None if e.b[-1] is None else e.b[-1][:, :1].copy()
    train_step(e, NTR, y[:, :n_out], eta, act)
    return e


S = slice(0, NTR)


def _ratios(residual, etas):
    r = [residual(eta) for eta in etas]
    return [a / b for a, b in zip(r, r[1:])], r


@pytest.mark.parametrize("act,rules,params,n_out", [
    ("tanh", None, None, 2),
    ("tanh", None, None, 1),
    ("relu", None, None, 2),
    ("gelu", "resmlp", {"xi": 0.8, "C_b": 0.1, "C_W": 0.9, "lambda_b": 0.5, "lambda_W": 1.2}, 2),
    ("tanh", "mlp_nobias", {"C_W": 1.4, "lambda_W": 0.8}, 1),
])
def test_one_step_is_minus_eta_ntk_times_error(act, rules, params, n_out):
    """z(1) − z(0) = −η Σ_{j,α∈A} H_{ij;δα} ε_{j;α} + O(η²), H from networks.layer_objects."""
    act = parse_activation(act)
    ens, x, y = _setup(act, rules, params)
    o = _objects(ens, act, H=True)
    eps = o["z"][:, :n_out, S] - y[:, :n_out].T[None]
    lin = -np.einsum("cijda,cja->cid", o["H"][:, :n_out, :n_out, :, S], eps)

    def residual(eta):
        z1 = _outputs(_stepped(ens, y, eta, act, n_out), act)
        return np.abs(z1 - o["z"][:, :n_out] - eta * lin).max()

    ratios, r = _ratios(residual, [2e-4, 1e-4])
    assert 3.6 < ratios[0] < 4.4, (ratios, r)              # the remainder is O(η²) ...
    assert r[-1] < 1e-3 * np.abs(1e-4 * lin).max()         # ... and small against the first order


def _outputs(ens, act):
    return forward(ens, activation_derivatives(act, 0)).z[-1]


def test_update_is_the_taylor_expansion_of_section_7():
    """docs/conventions.md §7: z(1) − z(0) = −ηHε + (η²/2) dH εε − (η³/6) ddIH εεε + O(η⁴), with
    dH_{ijk;δα1α2} ε_{j;α1} ε_{k;α2} and ddIH_{ijkl;δα1α2α3} ε_{j;α1} ε_{k;α2} ε_{l;α3} in the index
    order written there: the remainder shrinks 16-fold when η halves (8-fold without the η³ term)."""
    ens, x, y = _setup()
    o = _objects(ens, TANH, H=True, dH=True, ddIH=True)
    eps = o["z"][:, :, S] - y.T[None]
    t1 = -np.einsum("cijda,cja->cid", o["H"][..., S], eps)
    t2 = 0.5 * np.einsum("cijkdab,cja,ckb->cid", o["dH"][..., S, S], eps, eps)
    t3 = -np.einsum("cijkldabe,cja,ckb,cle->cid", o["ddIH"][..., S, S, S], eps, eps, eps) / 6
    dz = {eta: _objects(_stepped(ens, y, eta, TANH), TANH)["z"] - o["z"] for eta in (0.004, 0.002, 0.001)}
    ratios3, r3 = _ratios(lambda e: np.abs(dz[e] - e * t1 - e ** 2 * t2 - e ** 3 * t3).max(), sorted(dz)[::-1])
    ratios2, _ = _ratios(lambda e: np.abs(dz[e] - e * t1 - e ** 2 * t2).max(), sorted(dz)[::-1])
    assert all(13.5 < q < 18.5 for q in ratios3), (ratios3, r3)
    assert all(7 < q < 9 for q in ratios2), ratios2
    assert r3[-1] < 1e-5 * np.abs(dz[0.001]).max()


def test_ntk_update_to_second_order():
    """H(1) − H(0) = −η Σ (dH_{i1i2j} + dH_{i2i1j}) ε_j + (η²/2) Σ (ddIH_{i1i2jk} + ddIH_{i2i1jk}
    + ddIIH_{i1i2jk} + ddIIH_{i1i2kj}) ε_j ε_k + O(η³) (input indices in the same order as the
    neurons): the remainder shrinks 8-fold when η halves (4-fold without the η² term)."""
    ens, x, y = _setup()
    o = _objects(ens, TANH, H=True, dH=True, ddIH=True, ddIIH=True)
    eps = o["z"][:, :, S] - y.T[None]
    dH, ddIH, ddIIH = o["dH"][..., S], o["ddIH"][..., S, S], o["ddIIH"][..., S, S]
    h1 = -(np.einsum("cijkdea,cka->cijde", dH, eps) + np.einsum("cjikeda,cka->cijde", dH, eps))
    h2 = 0.5 * (np.einsum("cijkldeab,cka,clb->cijde", ddIH, eps, eps)
                + np.einsum("cjikledab,cka,clb->cijde", ddIH, eps, eps)
                + np.einsum("cijkldeab,cka,clb->cijde", ddIIH, eps, eps)
                + np.einsum("cijlkdeba,cka,clb->cijde", ddIIH, eps, eps))
    dH_ = {eta: _objects(_stepped(ens, y, eta, TANH), TANH, H=True)["H"] - o["H"] for eta in (0.004, 0.002, 0.001)}
    etas = sorted(dH_)[::-1]
    ratios2, r2 = _ratios(lambda e: np.abs(dH_[e] - e * h1 - e ** 2 * h2).max(), etas)
    ratios1, _ = _ratios(lambda e: np.abs(dH_[e] - e * h1).max(), etas)
    assert all(7 < q < 9.5 for q in ratios2), (ratios2, r2)
    assert all(3.5 < q < 4.6 for q in ratios1), ratios1
    assert r2[-1] < 1e-3 * np.abs(dH_[0.001]).max()


def test_dntk_update_to_first_order():
    """dH(1) − dH(0) = −η Σ_j (ddIH_{i0i1i2j} + ddIIH_{i0i1i2j} + ddIIH_{i0i2i1j}) ε_j + O(η²) (docs/training.md §2):
    the remainder shrinks 4-fold when η halves (2-fold without the η term)."""
    ens, x, y = _setup()
    o = _objects(ens, TANH, dH=True, ddIH=True, ddIIH=True)
    eps = o["z"][:, :, S] - y.T[None]
    ddIH, ddIIH = o["ddIH"][..., S], o["ddIIH"][..., S]
    d1 = -(np.einsum("cijkldefa,cla->cijkdef", ddIH, eps) + np.einsum("cijkldefa,cla->cijkdef", ddIIH, eps)
           + np.einsum("cikjldfea,cla->cijkdef", ddIIH, eps))
    step = {eta: _objects(_stepped(ens, y, eta, TANH), TANH, dH=True)["dH"] - o["dH"] for eta in (0.002, 0.001, 0.0005)}
    etas = sorted(step)[::-1]
    ratios1, r1 = _ratios(lambda e: np.abs(step[e] - e * d1).max(), etas)
    ratios0, _ = _ratios(lambda e: np.abs(step[e]).max(), etas)
    assert all(3.5 < q < 4.6 for q in ratios1), (ratios1, r1)
    assert all(1.8 < q < 2.2 for q in ratios0), ratios0
    assert r1[-1] < 3e-2 * np.abs(step[0.0005]).max()


def test_empirical_ntk_is_the_per_network_ntk():
    ens, x, y = _setup(count=4)
    H = empirical_ntk(ens, NTR, TANH)
    ref = _objects(ens, TANH, H=True)["H"][..., S, S]       # [c, i, j, α, β]
    np.testing.assert_allclose(H, ref.transpose(0, 1, 3, 2, 4).reshape(4, 2 * NTR, 2 * NTR), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(empirical_ntk(ens, NTR, TANH, 1), H[:, :NTR, :NTR], rtol=1e-12, atol=1e-12)
    assert stable_step(np.diag([1.0, 4.0])) == 0.5


def _model(act="tanh", width=8, depth=3):
    return ModelSpec(parse_activation(act), depth=depth, width=width, cb=0.1, cw=1.5, lb=1.0, lw=1.0)


def _data(out_width=1):
    rng = np.random.default_rng(1)
    return rng.normal(size=(3, 2)), rng.normal(size=(3, out_width)), rng.normal(size=(1, 2))


def test_networks_do_not_depend_on_chunk_and_converge():
    xtr, y, xte = _data()
    kw = dict(lr=0.1, steps=[1, 10, math.inf], samples=40, batches=4)
    a = train_ensemble(_model(), xtr, y, xte, chunk=40, **kw)
    b = train_ensemble(_model(), xtr, y, xte, chunk=7, **kw)
    assert a.steps == [0, 1, 10, math.inf]
    for k in a.steps:
        np.testing.assert_array_equal(a.outputs[k], b.outputs[k])
    np.testing.assert_array_equal(a.converged_steps, b.converged_steps)
    # converged: the training outputs are the targets, and a long finite run agrees
    np.testing.assert_allclose(a.train(math.inf), np.broadcast_to(y.T, a.train(math.inf).shape), atol=1e-9)
    T = int(a.meta["converged_step"]) + 500
    c = train_ensemble(_model(), xtr, y, xte, chunk=40, **{**kw, "steps": [T]})
    np.testing.assert_allclose(c.outputs[T], a.outputs[math.inf], atol=1e-9, rtol=0)
    assert a.meta["stable_lr"] > 0.1 and a.meta["method"] == "gradient-descent"
    assert a.ntk is None and a.ntk_mean.shape == (4, 4)
    np.testing.assert_allclose(a.meta["stable_lr"], stable_step(a.ntk_mean[:3, :3]), rtol=1e-12)


def test_initial_networks_are_the_samplers():
    """Same seed and number of networks: step 0 is the sampler's networks (E[z z] = its K+G1)."""
    xtr, y, xte = _data(2)
    m = _model(depth=2)
    r = train_ensemble(m, xtr, y, xte, lr=0.1, steps=[0], samples=60, out_width=2, seed=5)
    x = np.concatenate([xtr, xte])
    s = sample(ModelSpec(m.activation, 2, 8, 0.1, 1.5, 1.0, 1.0, x), 60, seed=5, stats=("K",), batches=30)
    z = r.initial
    zz = 0.5 * (np.einsum("ca,cb->ab", z[:, 0], z[:, 0]) + np.einsum("ca,cb->ab", z[:, 1], z[:, 1])) / 60
    np.testing.assert_allclose(s["layers"][1]["K+G1"]["mean"], zz, rtol=1e-12)
    one = train_ensemble(m, xtr, y[:, 0], xte, lr=0.1, steps=[0], samples=60, seed=5)
    np.testing.assert_allclose(one.initial, z[:, :1], rtol=1e-13, atol=1e-15)   # neuron 0 of the same networks


def test_means_covariances_and_their_errors():
    xtr, y, xte = _data()
    r = train_ensemble(_model(), xtr, y, xte, lr=0.01, steps=[1, 5], samples=300, batches=10)
    assert isinstance(r, TrainedEnsemble) and r.samples == 300
    assert r.mean(5).shape == (1, 4) and r.cov(5).shape == (4, 4)
    np.testing.assert_allclose(r.cov(0), np.cov(r.initial[:, 0].T), rtol=1e-12)
    err = r.mean_stderr(0)
    assert np.all(np.abs(r.mean(0)) < 5 * err)                # E[z(0)] = 0 by symmetry
    assert np.all(r.cov_stderr(5) > 0)
    v, e = r.batch_estimate(lambda o: o[5].mean(0))
    np.testing.assert_allclose(v, r.mean(5))
    np.testing.assert_allclose(e, r.mean_stderr(5))
    # a control variate: after one small step, z(1) − z(0) fluctuates much less than z(1)
    cv = r.standard_error_of(lambda o: (o[1] - o[0]).mean(0))
    assert np.all(cv < 0.3 * r.mean_stderr(1))
    assert r.meta["samples"] == 300 and r.meta["lr"] == 0.01 and r.meta["steps"] == [0, 1, 5]


def test_divergence_and_no_convergence_are_clear_errors():
    xtr, y, xte = _data()
    stable = train_ensemble(_model(), xtr, y, xte, lr=0.1, steps=[0], samples=4, batches=2).meta["stable_lr"]
    with pytest.raises(NumericsError, match=r"diverges.*2/λ_max = ") as exc:
        with np.errstate(over="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            train_ensemble(_model(), xtr, y, xte, lr=3 * stable, steps=[2000], samples=4, batches=2)
    assert exc.value.reason == "diverges"
    # width 8: some networks' own NTK is unstable at 0.9 of the ensemble's stable step
    with pytest.warns(RuntimeWarning, match=r"of 40 networks' empirical NTK"):
        r = train_ensemble(_model(), xtr, y, xte, lr=0.9 * stable, steps=[3], samples=40, batches=2)
    assert 0 < r.meta["unstable_networks"] < 40
    with pytest.raises(NumericsError, match="did not converge in 5 steps"):
        train_ensemble(_model(), xtr, y, xte, lr=0.01, steps=[math.inf], samples=4, batches=2, max_steps=5)
    with pytest.warns(RuntimeWarning, match="did not converge in 5 steps"):
        r = train_ensemble(_model(), xtr, y, xte, lr=0.01, steps=[2, math.inf], samples=4, batches=2, max_steps=5,
                           unconverged="keep")
    assert r.meta["unconverged_networks"] == 4 and np.all(r.converged_steps == -1)
    c = train_ensemble(_model(), xtr, y, xte, lr=0.01, steps=[7], samples=4, batches=2)
    np.testing.assert_array_equal(r.outputs[math.inf], c.outputs[7])     # the state after 2 + 5 steps


@pytest.mark.parametrize("change,match", [
    ({"lr": 0.0}, "learning rate"), ({"lr": -1.0}, "learning rate"), ({"lr": math.nan}, "learning rate"),
    ({"steps": [-1]}, "steps"), ({"steps": [1.5]}, "steps"), ({"steps": []}, "no step"), ({"steps": "10"}, "steps"),
    ({"y_train": np.zeros((2, 1))}, "y_train"), ({"y_train": np.zeros((3, 2))}, "y_train"),
    ({"y_train": np.array([0.0, math.nan, 1.0])}, "NaN"),
    ({"x_train": np.array([[0.0, math.nan]] * 3)}, "NaN"), ({"x_train": np.zeros(3)}, "2-D"),
    ({"x_test": np.zeros((1, 3))}, "x_test"), ({"x_test": np.array([[math.inf, 0.0]])}, "NaN or inf"),
    ({"out_width": 3}, "out_width"), ({"samples": 1}, "samples"), ({"chunk": 0}, "chunk"),
    ({"seed": -1}, "seed"), ({"tol": 0.0}, "tol"), ({"max_steps": 0}, "max_steps"),
    ({"unconverged": "ignore"}, "unconverged"),
])
def test_bad_input_is_an_input_error(change, match):
    xtr, y, xte = _data()
    kw = dict(x_train=xtr, y_train=y, x_test=xte, lr=0.1, steps=[1], samples=4, batches=2)
    kw.update(change)
    with pytest.raises(InputError, match=match):
        train_ensemble(_model(), kw.pop("x_train"), kw.pop("y_train"), kw.pop("x_test"), **kw)


def test_train_networks_checks_its_input():
    ens, x, y = _setup()
    with pytest.raises(InputError, match="targets"):
        train_networks(ens, NTR, y[:1], 0.1, [1], activation=TANH)
    with pytest.raises(InputError, match="output width 3"):
        train_networks(ens, NTR, np.zeros((NTR, 3)), 0.1, [1], activation=TANH)
    with pytest.raises(InputError, match="n_train"):
        train_networks(ens, 4, np.zeros((4, 1)), 0.1, [1], activation=TANH)
    with pytest.raises(InputError, match="activation"):
        train_networks(ens, NTR, y, 0.1, [1], activation="tanh")
    out = train_networks(ens, NTR, y, 0.1, [3], activation=TANH)
    assert sorted(out) == [0, 3] and out[3].shape == (3, 2, 3)
    np.testing.assert_array_equal(out[0], _objects(ens, TANH)["z"])   # ens itself is not trained


def test_wide_linear_networks_follow_kernel_gradient_descent():
    """At large width the trained ensemble is kernel gradient descent (docs/conventions.md §7):
    z(T) = (1 − Q E_A) z(0) + Q y with Q = Θ_{·A} Θ_AA⁻¹ [1 − (1 − ηΘ_AA)^T], so mean Q y and covariance
    (1 − Q E_A) K (1 − Q E_A)ᵀ; deep linear networks have closed-form K and Θ.  Within 4 standard
    errors plus an O(1/n) allowance."""
    cb, cw, lb, lw, n = 0.1, 1.2, 0.5, 1.5, 512
    xtr, xte = np.array([[1.0, 0.2], [-0.3, 0.9]]), np.array([[0.5, 0.5]])
    y = np.array([[0.7], [-0.4]])
    x = np.concatenate([xtr, xte])
    K1, T1 = cb + cw * x @ x.T / 2, lb + lw * x @ x.T / 2
    K, Th = cb + cw * K1, lb + lw * K1 + cw * T1
    eta = 0.5 * 2 / np.linalg.eigvalsh(Th[:2, :2])[-1]
    m = ModelSpec(parse_activation("linear"), depth=2, width=n, cb=cb, cw=cw, lb=lb, lw=lw)
    r = train_ensemble(m, xtr, y, xte, lr=eta, steps=[10, math.inf], samples=1000, batches=10)
    assert abs(r.meta["stable_lr"] / (2 * eta) - 1) < 0.02
    E = np.eye(3)[:2]
    for T in (0, 10, math.inf):
        f = np.eye(2) - (np.linalg.matrix_power(np.eye(2) - eta * Th[:2, :2], T) if T != math.inf else 0)
        Q = Th[:, :2] @ np.linalg.solve(Th[:2, :2], f)
        M = np.eye(3) - Q @ E
        assert np.all(np.abs(r.mean(T)[0] - Q @ y[:, 0]) <= 4 * r.mean_stderr(T)[0] + 0.1 / n), T
        assert np.all(np.abs(r.cov(T) - M @ K @ M.T) <= 4 * r.cov_stderr(T) + 0.1 / n), T


def test_save_and_load(tmp_path):
    xtr, y, xte = _data()
    r = train_ensemble(_model(), xtr, y, xte, lr=0.05, steps=[2, math.inf], samples=6, batches=2, keep_ntk=True)
    r.save(str(tmp_path / "t.npz"))
    s = TrainedEnsemble.load(str(tmp_path / "t.npz"))
    assert s.steps == r.steps and s.meta == r.meta and s.n_train == 3 and s.batches == 2
    for k in r.steps:
        np.testing.assert_array_equal(s.outputs[k], r.outputs[k])
    np.testing.assert_array_equal(s.converged_steps, r.converged_steps)
    np.testing.assert_array_equal(s.ntk, r.ntk)
    np.testing.assert_allclose(s.ntk_mean, r.ntk.mean(0), rtol=1e-12)
    with pytest.raises(InputError, match=".npz"):
        r.save(str(tmp_path / "t.json"))
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(InputError, match="bad.npz"):
        TrainedEnsemble.load(str(tmp_path / "bad.npz"))
