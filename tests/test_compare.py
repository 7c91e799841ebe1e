"""Tests of ntkdiagrams.analysis.compare: predictions vs Monte Carlo, with a prediction that is exact
(two-layer linear network, see tests/test_montecarlo.py) and deliberately wrong ones."""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

from ntkdiagrams.numerics.activations import parse_activation
from ntkdiagrams.sampling.model import ModelSpec
from ntkdiagrams.analysis.compare import compare, find_symmetries, format_table, summary, summary_by_statistic
from ntkdiagrams.cli import compare as compare_cli
from ntkdiagrams.language.rulefile import load_rules
from ntkdiagrams.sampling.sampler import load_result, sample, save_result

X = np.array([[1.0, 0.5, -0.3], [-0.2, 1.2, 0.7]])
CB, CW, LB, LW, WIDTH = 0.3, 1.7, 0.8, 1.4, 6


def _exact_prediction():
    """Layer-1 and layer-2 kernels and 1/n coefficients of a linear network (exact)."""
    n0 = X.shape[1]
    K = CB + CW * X @ X.T / n0
    Th = LB + LW * X @ X.T / n0
    e = np.einsum
    KK = e("ac,bd->abcd", K, K) + e("ad,bc->abcd", K, K)
    z4 = np.zeros((2,) * 4)
    lay1 = {"layer": 1, "K": K, "G1": 0 * K, "Theta": Th, "Theta1": 0 * K}
    lay1.update({s: z4 for s in "VABDFPQRSTU"})
    lay2 = {"layer": 2, "K": CB + CW * K, "G1": 0 * K, "Theta": LB + LW * K + CW * Th,
            "Theta1": 0 * K, "V": CW ** 2 * KK, "A": LW ** 2 * KK,
            "B": CW ** 2 * e("ac,bd->abcd", Th, Th), "D": LW * CW * KK,
            "F": CW ** 2 * e("ac,bd->abcd", Th, K), "P": z4,
            "Q": LW * CW * e("ac,bd->abcd", Th, K), "R": z4,
            "S": LW * CW * e("ac,bd->abcd", Th, Th), "T": LW ** 2 * e("ad,bc->abcd", Th, K),
            "U": z4}
    tolist = lambda d: {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}  # noqa: E731
    return {"meta": {"width": WIDTH, "activation": "linear"}, "layers": [tolist(lay1), tolist(lay2)]}


@pytest.fixture(scope="module")
def mc():
    m = ModelSpec(activation=parse_activation("linear"), depth=2, width=WIDTH, cb=CB, cw=CW,
                  lb=LB, lw=LW, inputs=X)
    return sample(m, 6000, stats="all", seed=1)


def test_exact_prediction_agrees(mc):
    rows = compare(_exact_prediction(), mc)
    assert len(rows) == 2 * (2 * 4 + 11 * 16)
    s = summary(rows)
    assert s["max_abs_z"] < 4.5, format_table([r for r in rows if abs(r["z"]) >= 4.5])
    assert s["within_3sigma"] > 0.95
    assert {r["stat"] for r in rows} == {"K+G1", "Theta+Theta1", *"VABDFPQRSTU"}
    ntk1 = [r for r in rows if r["layer"] == 1 and r["stat"] == "Theta+Theta1"]
    assert all(r["stderr"] < 1e-12 and abs(r["z"]) < 1e-3 for r in ntk1)  # no fluctuation


@pytest.mark.parametrize("stat,change", [
    ("B", lambda a: a.transpose(0, 2, 1, 3)),   # wrong storage order
    ("T", lambda a: a.transpose(0, 3, 1, 2)),
    ("S", lambda a: 0.5 * a),                   # factor two
    ("Theta+Theta1", None),
])
def test_wrong_prediction_is_detected(mc, stat, change):
    pred = _exact_prediction()
    lay2 = pred["layers"][1]
    if stat == "Theta+Theta1":
        lay2["Theta1"] = (np.full((2, 2), 3.0 * WIDTH)).tolist()  # shifts Θ + Θ1/n by 3
    else:
        lay2[stat] = change(np.array(lay2[stat])).tolist()
    rows = [r for r in compare(pred, mc) if r["layer"] == 2 and r["stat"] == stat]
    assert max(abs(r["z"]) for r in rows) > 8
    # the unique components see it too (a symmetry the wrong prediction breaks is not used)
    rows = [r for r in compare(pred, mc, unique=True) if r["layer"] == 2 and r["stat"] == stat]
    assert max(abs(r["z"]) for r in rows) > 8


def test_g1_over_n_and_leading_order_note(mc):
    pred = _exact_prediction()
    del pred["layers"][1]["G1"]
    for name in ("K", "G1", "K+G1"):   # rule-file names select the sampled E[zz]
        rows = compare(pred, mc, stats={name})
        assert {r["note"] for r in rows if r["layer"] == 2} == {"leading order"}
        assert {r["stat"] for r in rows} == {"K+G1"}
    with pytest.warns(DeprecationWarning, match="G .now K[+]G1"):
        assert {r["stat"] for r in compare(pred, mc, stats={"G"})} == {"K+G1"}


def _parse(argv):
    parser = argparse.ArgumentParser(prog="ntkdiagrams")
    sub = parser.add_subparsers(dest="command")
    compare_cli.add_parser(sub)
    return parser.parse_args(argv)


def test_cli_table_and_exit_codes(tmp_path, mc, capsys):
    pred_path, mc_path = tmp_path / "pred.json", tmp_path / "mc.npz"
    pred_path.write_text(json.dumps(_exact_prediction()))
    save_result(mc, str(mc_path))
    args = _parse(["compare", str(pred_path), str(mc_path), "--max-z", "4.5"])
    assert args.func is compare_cli.run
    assert compare_cli.run(args) == 0
    out = capsys.readouterr().out
    assert "summary:" in out and "max |z|" in out and "within 3σ" in out
    assert "vs K + G1/n" in out and "vs Theta + Theta1/n" in out       # the pairing, in the header
    assert "listing unique components" in out and "V: 1243 2134 2143 3412 3421 4312 4321 [rule file 'mlp'" in out
    assert "    2            B (1,1,2,2)" in out and "    2            B (2,2,1,1)" not in out
    assert "summary per statistic and layer:" in out
    assert "           V     2          6       16" in out     # 6 unique components of 16 entries
    args = _parse(["compare", str(pred_path), str(mc_path), "--all"])
    assert compare_cli.run(args) == 0
    full = capsys.readouterr().out
    assert "listing every entry" in full and "    2            B (2,2,1,1)" in full
    assert len(full.splitlines()) > len(out.splitlines()) + 100
    bad = _exact_prediction()
    bad["layers"][1]["B"] = (2 * np.array(bad["layers"][1]["B"])).tolist()
    pred_path.write_text(json.dumps(bad))
    assert compare_cli.run(_parse(["compare", str(pred_path), str(mc_path), "--max-z", "4.5"])) == 1


def test_cli_bad_files(tmp_path, mc, capsys):
    mc_path = tmp_path / "mc.json"
    save_result(mc, str(mc_path))
    assert compare_cli.run(_parse(["compare", str(tmp_path / "missing.json"), str(mc_path)])) == 2
    wrong = _exact_prediction()
    wrong["layers"][1]["V"] = np.zeros((3, 3, 3, 3)).tolist()
    p = tmp_path / "wrong.json"
    p.write_text(json.dumps(wrong))
    assert compare_cli.run(_parse(["compare", str(p), str(mc_path)])) == 2
    assert "shape" in capsys.readouterr().err


def test_plot_or_clean_message(tmp_path, mc, capsys):
    pred_path, mc_path = tmp_path / "pred.json", tmp_path / "mc.json"
    pred_path.write_text(json.dumps(_exact_prediction()))
    save_result(mc, str(mc_path))
    fig = tmp_path / "fig.png"
    code = compare_cli.run(_parse(["compare", str(pred_path), str(mc_path), "--plot", str(fig)]))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert code == 2 and not fig.exists()
        assert "matplotlib" in capsys.readouterr().err
    else:
        assert code == 0 and fig.exists()


def test_unique_components_and_their_symmetries(mc):
    pred = _exact_prediction()
    syms = find_symmetries(pred, mc)
    rules = load_rules("mlp")
    for s in "VABDFPQRSTU":
        want = {p for p in rules.tensors[s].symmetries if p != (0, 1, 2, 3)}
        assert set(syms[s].perms) == want and not syms[s].dropped, s   # every rule-file symmetry holds
        assert "rule file 'mlp'" in syms[s].source
    assert syms["K+G1"].perms == ((1, 0),) and syms["Theta+Theta1"].perms == ((1, 0),)
    rows = compare(pred, mc, unique=True)
    full = compare(pred, mc)
    for g in summary_by_statistic(rows):
        assert g["entries"] == {True: 4, False: 16}[g["stat"] in ("K+G1", "Theta+Theta1")]
    v2 = [r for r in rows if r["layer"] == 2 and r["stat"] == "V"]
    assert [r["index"] for r in v2] == [(0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 1), (0, 1, 0, 1),
                                        (0, 1, 1, 1), (1, 1, 1, 1)]
    assert [r["orbit"] for r in v2] == [1, 4, 2, 4, 4, 1]
    # a unique row has the z of every entry it stands for
    byidx = {(r["layer"], r["stat"], r["index"]): r["z"] for r in full}
    for r in rows:
        assert r["z"] == pytest.approx(byidx[(r["layer"], r["stat"], r["index"])], abs=1e-9)
    assert max(abs(r["z"]) for r in full) == pytest.approx(max(abs(r["z"]) for r in rows), abs=1e-6)
    # without the rule file: the permutations under which both files are numerically invariant
    # (the MC estimators are symmetrised exactly under the rule file's, and under no other)
    num = find_symmetries(pred, mc, rules=None)
    assert set(num["V"].perms) == set(syms["V"].perms) and "numerical" in num["V"].source


def test_broken_symmetry_is_not_used(mc):
    pred = _exact_prediction()
    lay2 = pred["layers"][1]
    lay2["A"] = np.array(lay2["A"]).transpose(0, 2, 1, 3).tolist()   # not symmetric in (1 2)(3 4) any more
    syms = find_symmetries(pred, mc, stats={"A"})
    assert syms["A"].dropped and "not invariant under" in syms["A"].text()
    assert set(syms["A"].perms) | set(syms["A"].dropped) == {p for p in load_rules("mlp").tensors["A"].symmetries
                                                             if p != (0, 1, 2, 3)}


def test_old_result_files_still_compare(tmp_path, mc):
    """Files written before the rename (G, NTK) are read under the new names."""
    old = {"meta": dict(mc["meta"], stats=["G", "NTK", "V"]),
           "layers": [{"layer": e["layer"], "G": e["K+G1"], "NTK": e["Theta+Theta1"], "V": e["V"]}
                      for e in mc["layers"]]}
    path = tmp_path / "old.json"
    save_result(old, str(path))
    back = load_result(str(path))
    assert back["meta"]["stats"] == ["K+G1", "Theta+Theta1", "V"]
    assert set(back["layers"][1]) == {"layer", "K+G1", "Theta+Theta1", "V"}
    rows = compare(_exact_prediction(), back)
    assert {r["stat"] for r in rows} == {"K+G1", "Theta+Theta1", "V"}
    assert {r["stat"] for r in compare(_exact_prediction(), old)} == {"K+G1", "Theta+Theta1", "V"}
