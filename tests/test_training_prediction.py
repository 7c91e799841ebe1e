"""nd.train_prediction and `ntkdiagrams train`: the result's layout, its consistency with the
output layer's statistics, and bad input.  The dynamics themselves: tests/test_training_dynamics.py;
trained networks: notebooks/05_training.ipynb and docs/validation/training.md."""
import json
import math

import numpy as np
import pytest

import ntkdiagrams as nd
from ntkdiagrams.cli import main
from ntkdiagrams.errors import InputError
from ntkdiagrams.training.prediction import parse_steps

XA = np.array([[1.0, 0.2, -0.5], [-0.3, 1.1, 0.4]])
XB = np.array([[0.5, -0.6, 0.9]])
Y = np.array([[0.3, -0.1], [0.2, 0.4]])


@pytest.fixture(scope="module")
def pred():
    return nd.train_prediction("tanh", 2, XA, Y, XB, lr_fraction=0.6, steps=[0, 3, math.inf], width=50,
                               all_neurons=True)


def test_layout_and_prediction(pred):
    doc = pred.to_dict()
    assert [r["step"] for r in doc["steps"]] == [0, 3, "inf"]
    assert doc["meta"]["n_out"] == 2 and doc["meta"]["n_train"] == 2 and doc["meta"]["n_test"] == 1
    for row in doc["steps"]:
        for name in ("mean", "cov"):
            inf, corr, pr = (np.array(row[name][k]) for k in ("infinite", "correction", "prediction"))
            np.testing.assert_allclose(pr, inf + corr / 50, rtol=0, atol=1e-15)
    json.dumps(doc, allow_nan=False)
    # step 0: the initial ensemble, mean 0 and covariance K + G1/n (neuron-major, neurons independent)
    lay = pred.output_layer
    np.testing.assert_allclose(pred.mean(0), 0.0, atol=1e-15)
    np.testing.assert_allclose(pred.cov(0)[:3, :3], lay["K"], rtol=1e-13)
    np.testing.assert_allclose(pred.cov(0, "correction")[:3, :3], lay["G1"], rtol=1e-13)
    np.testing.assert_allclose(pred.cov(0)[:3, 3:], 0.0, atol=1e-15)
    # converged: the training outputs are the targets at any width
    np.testing.assert_allclose(pred.mean(math.inf)[[0, 1, 3, 4]], Y.T.ravel(), atol=1e-12)
    np.testing.assert_allclose(pred.mean(math.inf, "correction")[[0, 1, 3, 4]], 0.0, atol=1e-10)


def test_neuron_zero_by_default_and_files(tmp_path, pred):
    one = nd.train_prediction("tanh", 2, XA, Y, XB, lr=pred.meta["lr"], steps=[3], width=50)
    np.testing.assert_allclose(one.mean(3, "correction"), pred.mean(3, "correction")[:3], rtol=1e-12)
    np.testing.assert_allclose(one.cov(3, "correction"), pred.cov(3, "correction")[:3, :3], rtol=1e-12)
    one.write(str(tmp_path / "t.json"))
    one.write(str(tmp_path / "t.npz"))
    doc = json.loads((tmp_path / "t.json").read_text())
    assert len(doc["steps"][0]["mean"]["prediction"]) == 3
    z = np.load(tmp_path / "t.npz")
    np.testing.assert_allclose(z["step3/cov/correction"], doc["steps"][0]["cov"]["correction"])


def test_leaving_out_contributions_changes_the_answer(pred):
    bare = nd.train_prediction("tanh", 2, XA, Y, XB, lr=pred.meta["lr"], steps=[3], width=50, all_neurons=True,
                               include=["G1", "Theta1", "NTK-fluctuations"])
    assert np.abs(bare.mean(3, "correction") - pred.mean(3, "correction")).max() > 1e-3
    # no O(1/n) contribution at all: the correction is zero
    none = nd.train_prediction("tanh", 2, XA, Y, XB, lr=pred.meta["lr"], steps=[3], include=[])
    np.testing.assert_allclose(none.mean(3, "correction"), 0.0, atol=1e-15)


@pytest.mark.parametrize("kwargs,message", [
    (dict(y_train=np.ones(3)), "y_train must have shape"),
    (dict(y_train=np.array([np.nan, 1.0])), "NaN"),
    (dict(lr=0.1, lr_fraction=0.5), "not both"),
    (dict(lr=-1.0), "positive"),
    (dict(lr_fraction=1.5), r"\(0, 1\)"),
    (dict(steps="3,abc"), "neither"),
    (dict(steps=[-1]), "non-negative"),
    (dict(width=0), "positive integer"),
    (dict(x_test=np.ones((1, 4))), "dimension"),
    (dict(lr=100.0), "largest stable step"),
])
def test_bad_input(kwargs, message):
    args = dict(x_train=XA, y_train=Y[:, 0], x_test=XB)
    args.update({k: v for k, v in kwargs.items() if k in args})
    rest = {k: v for k, v in kwargs.items() if k not in args}
    with pytest.raises(InputError, match=message):
        nd.train_prediction("tanh", 2, args["x_train"], args["y_train"], args["x_test"], **rest)


def test_kinks_are_refused_unless_allowed():
    from ntkdiagrams.errors import UnsupportedError
    with pytest.raises(UnsupportedError, match="kink"):
        nd.train_prediction("relu", 2, XA, Y[:, 0], XB, steps=[1])
    with pytest.warns(nd.ExpansionWarning, match="kink"):
        p = nd.train_prediction("relu", 2, XA, Y[:, 0], XB, steps=[1], allow_kinks=True)
    assert np.all(np.isfinite(p.mean(1, "correction")))


def test_parse_steps():
    assert parse_steps("10, inf,1") == [1, 10, math.inf]
    assert parse_steps([0, math.inf, 0]) == [0, math.inf]


def test_cli_writes_json_and_refuses_bad_input(tmp_path, capsys):
    np.save(tmp_path / "x.npy", XA)
    np.save(tmp_path / "y.npy", Y[:, 0])
    np.save(tmp_path / "t.npy", XB)
    out = tmp_path / "p.json"
    assert main(["train", "--depth", "2", "--width", "40", "--train", str(tmp_path / "x.npy"), "--targets",
                 str(tmp_path / "y.npy"), "--test", str(tmp_path / "t.npy"), "--steps", "1,inf",
                 "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["step"] for r in doc["steps"]] == [1, "inf"] and doc["meta"]["width"] == 40
    assert main(["train", "--depth", "2", "--train", str(tmp_path / "x.npy")]) == 2
    assert "--train and --targets together" in capsys.readouterr().err
    assert main(["train", "--depth", "2", "--without", "V"]) == 2
    assert "unknown contribution" in capsys.readouterr().err
    assert main(["train", "--depth", "2", "--steps", "1"]) == 0   # the built-in toy problem, printed
    assert "T = 1" in capsys.readouterr().out
