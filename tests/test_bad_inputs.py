"""Bad and borderline inputs across the command line: never a traceback, never a lost or partial file.

The table :data:`CASES` runs each bad command line through ``ntkdiagrams.cli.main(argv)`` in-process
(a few also through ``python3 -m ntkdiagrams``) and asserts: exit status 2, one line on stderr
``ntkdiagrams <subcommand>: error: …`` that says what is wrong and where (a keyword of the message),
no traceback, and no file left behind (no output, no temporary file, no probe of writability).

Further tests: the top-level handler (an unexpected exception gives one line with the command line
and a hint to report it with --debug, exit 70; --debug shows the traceback; Ctrl-C exits 130; a
closed output pipe exits quietly), atomic writes (a run interrupted after the checks leaves no
file), the memory estimate and refusal (numerics/memory.py), and the progress line of evaluate.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ntkdiagrams.cli import main
from ntkdiagrams.cli import evaluate as evaluate_cli
from ntkdiagrams.cli.main import EXIT_BROKEN_PIPE, EXIT_INTERNAL, EXIT_INTERRUPTED
from ntkdiagrams.cli.progress import LayerProgress

ROOT = Path(__file__).resolve().parents[1]

X2 = [[1.0, 0.5, -0.3], [-0.2, 1.2, 0.7]]
X2B = [[1.0, 0.5, -0.3], [-0.2, 1.2, 0.8]]          # same shape, another data set
X3 = [[1.0, 0.5, -0.3], [-0.2, 1.2, 0.7], [0.3, -0.4, 0.9]]


def _meta(activation="tanh", inputs=X2, **extra):
    return {"activation": activation, "depth": 2, "width": 4, "cb": 0.0, "cw": 1.0, "lb": 1.0, "lw": 1.0,
            "n_inputs": len(inputs), "n0": 3, "inputs": inputs, **extra}


def _prediction(n=2, **meta):
    eye = np.eye(n).tolist()
    return {"meta": _meta(kind="prediction", **meta),
            "layers": [{"layer": 1, "K": eye, "G1": np.zeros((n, n)).tolist()},
                       {"layer": 2, "K": eye, "G1": np.zeros((n, n)).tolist()}]}


def _mc(n=2, **meta):
    g = {"mean": np.eye(n).tolist(), "stderr": np.full((n, n), 0.01).tolist()}
    return {"meta": _meta(method="monte-carlo", **meta), "layers": [{"layer": 1, "G": g}, {"layer": 2, "G": g}]}


def _write_fixtures(d: Path) -> None:
    """The files the cases refer to, as {name}: good and bad inputs."""
    (d / "text.npy").write_text("1.0 2.0 3.0\n4.0 5.0 6.0\n")
    (d / "bin.toml").write_bytes(bytes(range(256)) * 4)
    (d / "bad.toml").write_text("[model\nname = 'x'\n")
    (d / "afile.txt").write_text("a file, not a folder\n")
    (d / "afolder").mkdir()
    (d / "afolder.npy").mkdir()
    (d / "d.json").mkdir()
    np.save(d / "nan.npy", np.array([[1.0, np.nan, 0.0], [0.0, 1.0, 0.0]]))
    np.save(d / "vec.npy", np.array([1.0, 2.0, 3.0]))
    np.save(d / "cube.npy", np.ones((2, 2, 3)))
    np.save(d / "empty.npy", np.ones((0, 3)))
    np.save(d / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.savez(d / "x.npz", x=np.ones((2, 3)))
    (d / "fake.npz").write_text("not a zip archive\n")
    (d / "pred.json").write_text(json.dumps(_prediction()))
    (d / "mc.json").write_text(json.dumps(_mc()))
    (d / "mc_relu.json").write_text(json.dumps(_mc(activation="relu")))
    (d / "mc_otherx.json").write_text(json.dumps(_mc(inputs=X2B)))
    (d / "mc3.json").write_text(json.dumps({"meta": {}, "layers": _mc(n=3, inputs=X3)["layers"]}))
    (d / "pred_nometa.json").write_text(json.dumps({"layers": _prediction()["layers"]}))
    (d / "nolayers.json").write_text(json.dumps({"meta": {}, "layers": {"1": []}}))
    (d / "badlayer.json").write_text(json.dumps({"meta": {}, "layers": [["K", 1]]}))


EV = ["evaluate", "--depth", "2", "--random", "2,3"]
SA = ["sample", "--depth", "2", "--width", "4", "--random", "2,3", "--samples", "60", "--batches", "3", "--quiet"]
CMP = ["compare", "{d}/pred.json", "{d}/mc.json"]

#: (case id, argv with {d} for the test folder, keyword of the message); every case exits 2
CASES = [
    # ---- output paths, checked before any work
    ("evaluate-out-missing-folder", EV + ["--out", "{d}/nodir/p.json"], "does not exist"),
    ("evaluate-out-wrong-suffix", EV + ["--out", "{d}/p.txt"], "must end in .json or .npz"),
    ("evaluate-out-is-a-folder", EV + ["--out", "{d}/d.json"], "is a folder"),
    ("evaluate-out-under-a-file", EV + ["--out", "{d}/afile.txt/p.json"], "is a file, not a folder"),
    ("evaluate-out-proc", EV + ["--out", "/proc/p.json"], "/proc"),
    ("evaluate-out-sys", EV + ["--out", "/sys/p.npz"], "/sys"),
    ("evaluate-out-no-name", EV + ["--out", "{d}/"], "give a file name"),
    ("sample-out-missing-folder", SA + ["--out", "{d}/nodir/mc.json"], "does not exist"),
    ("sample-out-wrong-suffix", SA + ["--out", "{d}/mc.csv"], "must end in .json or .npz"),
    ("sample-out-proc", SA + ["--out", "/proc/mc.npz"], "/proc"),
    ("compare-plot-missing-folder", CMP + ["--plot", "{d}/nodir/c.png"], "does not exist"),
    ("compare-plot-wrong-suffix", CMP + ["--plot", "{d}/c.txt"], "must end in"),
    ("compare-plot-proc", CMP + ["--plot", "/proc/c.png"], "/proc"),
    ("derive-draw-proc", ["derive", "K", "--draw", "/proc/figs"], "/proc"),
    ("derive-draw-is-a-file", ["derive", "K", "--draw", "{d}/afile.txt"], "is a file, not a folder"),
    ("derive-draw-under-a-file", ["derive", "K", "--draw", "{d}/afile.txt/figs"], "cannot create the folder"),
    # ---- input files
    ("inputs-missing", EV[:3] + ["--inputs", "{d}/missing.npy"], "no such file"),
    ("inputs-text-named-npy", EV[:3] + ["--inputs", "{d}/text.npy"], "not a NumPy .npy file"),
    ("inputs-npz", EV[:3] + ["--inputs", "{d}/x.npz"], ".npz archive"),
    ("inputs-python-objects", EV[:3] + ["--inputs", "{d}/obj.npy"], "Python objects"),
    ("inputs-nan", EV[:3] + ["--inputs", "{d}/nan.npy"], "NaN"),
    ("inputs-1d", EV[:3] + ["--inputs", "{d}/vec.npy"], "2-D array"),
    ("inputs-3d-sample", SA[:5] + ["--inputs", "{d}/cube.npy", "--out", "{d}/mc.json"], "2-D array"),
    ("inputs-empty", EV[:3] + ["--inputs", "{d}/empty.npy"], "N >= 1"),
    ("inputs-folder", EV[:3] + ["--inputs", "{d}/afolder.npy"], "is a folder"),
    ("rules-binary", ["derive", "K", "--rules", "{d}/bin.toml"], "not a UTF-8 text file"),
    ("rules-binary-evaluate", EV + ["--rules", "{d}/bin.toml"], "not a UTF-8 text file"),
    ("rules-missing", ["derive", "K", "--rules", "{d}/missing.toml"], "no such file"),
    ("rules-unknown-name", ["derive", "K", "--rules", "nosuch"], "no rule file 'nosuch'"),
    ("rules-not-toml", EV + ["--rules", "{d}/bad.toml"], "not valid TOML"),
    ("rules-folder", ["derive", "K", "--rules", "{d}/afolder"], "is a folder"),
    ("compare-pred-missing", ["compare", "{d}/missing.json", "{d}/mc.json"], "no such file"),
    ("compare-mc-missing", ["compare", "{d}/pred.json", "{d}/missing.npz"], "no such file"),
    ("compare-pred-binary", ["compare", "{d}/bin.toml", "{d}/mc.json"], "cannot read a JSON prediction"),
    ("compare-mc-not-a-zip", ["compare", "{d}/pred.json", "{d}/fake.npz"], "cannot read a Monte Carlo result"),
    ("compare-swapped", ["compare", "{d}/mc.json", "{d}/pred.json"], "Monte Carlo result of 'sample'"),
    ("compare-other-activation", ["compare", "{d}/pred.json", "{d}/mc_relu.json"], "different models"),
    ("compare-other-data-set", ["compare", "{d}/pred.json", "{d}/mc_otherx.json"], "different data sets"),
    ("compare-mismatched-shapes", ["compare", "{d}/pred_nometa.json", "{d}/mc3.json"], "shape"),
    ("compare-no-layers-list", ["compare", "{d}/pred.json", "{d}/nolayers.json"], "no 'layers' list"),
    ("compare-malformed-layer", ["compare", "{d}/badlayer.json", "{d}/mc.json"], "integer 'layer'"),
    ("compare-empty-stats", CMP + ["--stats", ","], "no statistic"),
    # ---- the model and the options
    ("evaluate-width-0", EV + ["--width", "0"], "--width must be >= 1"),
    ("evaluate-depth-0", ["evaluate", "--depth", "0"], "--depth must be >= 1"),
    ("sample-depth-negative", ["sample", "--depth", "-1", "--out", "{d}/mc.json"], "--depth must be >= 1"),
    ("sample-width-1", SA + ["--width", "1", "--out", "{d}/mc.json"], "width must be an integer >= 2"),
    ("evaluate-unknown-activation", EV + ["--activation", "bogus"], "unknown name 'bogus'"),
    ("evaluate-hostile-activation", EV + ["--activation", "__import__('os').system('true')"], "activation"),
    ("evaluate-unknown-statistic", EV + ["--stats", "K,XX"], "unknown statistic"),
    ("evaluate-no-statistic", EV + ["--stats", ","], "no statistic"),
    ("sample-unknown-statistic", SA + ["--stats", "G,Z", "--out", "{d}/mc.json"], "unknown statistic"),
    ("evaluate-negative-cw", EV + ["--cw", "-1"], "variance"),
    ("evaluate-nan-cb", EV + ["--cb", "nan"], "variance"),
    ("evaluate-infinite-lw", EV + ["--lw", "inf"], "must be finite"),
    ("evaluate-degree-0", EV + ["--degree", "0"], "degree"),
    ("evaluate-request-order-too-high", EV + ["--request", "E[z(i1;a1) z(i2;a2)]", "--order", "3"],
     "first order in 1/n"),
    ("random-one-number", ["evaluate", "--random", "2"], "--random expects N,n0"),
    ("random-not-numbers", ["evaluate", "--random", "a,b"], "--random expects N,n0"),
    ("random-three-numbers", ["evaluate", "--random", "2,3,4"], "--random expects N,n0"),
    ("random-zero", ["evaluate", "--random", "0,3"], "N >= 1"),
    ("sample-negative-seed", SA + ["--seed", "-1", "--out", "{d}/mc.json"], "--seed"),
    ("sample-one-batch", SA + ["--batches", "1", "--out", "{d}/mc.json"], "batches"),
    ("sample-too-few-samples", SA + ["--samples", "2", "--out", "{d}/mc.json"], "samples"),
    ("sample-chunk-0", SA + ["--chunk", "0", "--out", "{d}/mc.json"], "--chunk"),
    ("evaluate-memory-huge-n", ["evaluate", "--random", "2000,3", "--depth", "2", "--out", "{d}/p.json"],
     "not enough memory"),
    ("evaluate-memory-limit", ["evaluate", "--random", "200,3", "--stats", "V", "--max-memory", "1",
                               "--out", "{d}/p.npz"], "largest N that fits"),
    ("evaluate-bad-max-memory", EV + ["--max-memory", "0"], "--max-memory"),
    ("sample-memory-limit", SA[:5] + ["--random", "400,3", "--stats", "V", "--max-memory", "1",
                                      "--out", "{d}/mc.json"], "not enough memory"),
    ("derive-unknown-statistic", ["derive", "XX"], "unknown statistic 'XX'"),
    ("derive-order-for-a-tensor", ["derive", "K", "--order", "1"], "--order and --connected"),
    ("derive-mixed-requests", ["derive", "V", "E[z(i1;a1) z(i2;a2)]"], "not both"),
    ("derive-diagonal-no-activation", ["derive", "K", "--diagonal"], "--diagonal needs --activation"),
    ("derive-diagonal-smooth", ["derive", "Theta1", "--diagonal", "--activation", "tanh"], "scale-invariant"),
    ("critical-unknown-activation", ["critical", "--activation", "nosuch(z)"], "unknown function 'nosuch'"),
    ("critical-negative-depth", ["critical", "--depth", "-1"], "--depth must be >= 0"),
    ("critical-negative-k1", ["critical", "--activation", "tanh", "--depth", "3", "--k1", "-1"], "k1"),
    ("critical-nan-lw", ["critical", "--activation", "relu", "--depth", "3", "--lw", "nan"], "--lw must be finite"),
    ("critical-unknown-statistic", ["critical", "--activation", "tanh", "--depth", "3", "--stats", "XX"],
     "unknown statistic"),
]

#: a malformed request keeps its caret display under the one-line message
CARET = [("derive-malformed-request", ["derive", "E[z(i1;a1"], "column 10"),
         ("evaluate-request-unknown-field", EV + ["--request", "E[z(i1;a1) q(i2;a2)]"], "unknown field 'q'")]


@pytest.fixture
def folder(tmp_path):
    _write_fixtures(tmp_path)
    return tmp_path


def _listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def _argv(argv, d: Path) -> list[str]:
    return [a.replace("{d}", str(d)) for a in argv]


def test_the_table_is_large_and_covers_every_subcommand():
    assert len(CASES) + len(CARET) >= 40
    assert {argv[0] for _, argv, _ in CASES} == {"derive", "evaluate", "sample", "compare", "critical"}
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("argv,keyword", [(a, k) for _, a, k in CASES], ids=[n for n, _, _ in CASES])
def test_bad_input_exits_2_with_one_line_and_leaves_no_file(folder, argv, keyword, capsys):
    before = _listing(folder)
    status = main(_argv(argv, folder))
    captured = capsys.readouterr()
    err = captured.err
    assert status == 2, err
    assert "Traceback" not in err
    assert err.startswith(f"ntkdiagrams {argv[0]}: error: "), err
    assert err.count("\n") == 1, err
    assert keyword in err, err
    assert _listing(folder) == before


@pytest.mark.parametrize("argv,keyword", [(a, k) for _, a, k in CARET], ids=[n for n, _, _ in CARET])
def test_malformed_request_shows_the_column(folder, argv, keyword, capsys):
    assert main(_argv(argv, folder)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith(f"ntkdiagrams {argv[0]}: error: ") and keyword in err
    assert err.splitlines()[-1].strip() == "^"


@pytest.mark.parametrize("name", ["evaluate-out-missing-folder", "rules-binary", "evaluate-memory-huge-n",
                                  "compare-swapped", "inputs-text-named-npy"])
def test_bad_input_from_a_fresh_interpreter(folder, name):
    argv, keyword = next((a, k) for n, a, k in CASES if n == name)
    before = _listing(folder)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    r = subprocess.run([sys.executable, "-m", "ntkdiagrams", *_argv(argv, folder)], cwd=folder, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1 and keyword in r.stderr
    assert _listing(folder) == before


# --------------------------------------------------------------------------- the top-level handler

def test_unexpected_exception_is_one_line_with_the_command_and_a_hint(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("something\nbroke")
    monkeypatch.setattr(evaluate_cli, "run", boom)
    assert main(["evaluate", "--random", "2,3"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("ntkdiagrams evaluate: internal error: RuntimeError: something broke")
    assert "ntkdiagrams evaluate --random 2,3" in err and "--debug" in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(monkeypatch, capsys, where):
    def boom(args):
        raise RuntimeError("broke")
    monkeypatch.setattr(evaluate_cli, "run", boom)
    argv = ["--debug", "evaluate"] if where == "before" else ["evaluate", "--debug"]
    assert main(argv) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: broke" in err
    assert err.splitlines()[-1].startswith("ntkdiagrams evaluate: internal error: RuntimeError: broke")


def test_keyboard_interrupt_exits_130_in_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(evaluate_cli, "run", interrupted)
    assert main(["evaluate"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "ntkdiagrams evaluate: interrupted\n"


def test_os_and_memory_errors_are_one_line(monkeypatch, capsys):
    def full(args):
        raise OSError(28, "No space left on device", "/data/p.json")
    monkeypatch.setattr(evaluate_cli, "run", full)
    assert main(["evaluate"]) == 2
    assert capsys.readouterr().err == "ntkdiagrams evaluate: error: /data/p.json: No space left on device\n"

    def oom(args):
        raise MemoryError("Unable to allocate 47.7 GiB")
    monkeypatch.setattr(evaluate_cli, "run", oom)
    assert main(["evaluate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out of memory" in err and "47.7 GiB" in err


def test_broken_pipe_is_quiet(monkeypatch, capsys):
    def piped(args):
        raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr(evaluate_cli, "run", piped)
    assert main(["evaluate"]) == EXIT_BROKEN_PIPE
    assert capsys.readouterr().err == ""


#: a subcommand that prints 2 MB (more than a pipe holds), run in a fresh interpreter
BIG_OUTPUT = """
import sys
from ntkdiagrams.cli import derive as derive_cli, main
def run(args):
    for k in range(40000):
        print(f"line {k} " + "x" * 40)
    return 0
derive_cli.run = run
sys.exit(main(["derive"]))
"""


def test_closed_output_pipe_exits_quietly():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    p = subprocess.Popen([sys.executable, "-c", BIG_OUTPUT], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()                     # as `| head -1` does
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == EXIT_BROKEN_PIPE
    assert first.startswith(b"line 0 ") and err == ""


# --------------------------------------------------------------------------- atomic writes

@pytest.mark.parametrize("ext", ["json", "npz"])
def test_evaluate_interrupted_while_writing_leaves_no_file(folder, monkeypatch, capsys, ext):
    import ntkdiagrams.numerics.evaluate as numerics

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(numerics.json if ext == "json" else numerics.np, "dump" if ext == "json" else "savez",
                        interrupted)
    before = _listing(folder)
    assert main(EV + ["--out", str(folder / f"p.{ext}")]) == EXIT_INTERRUPTED
    assert _listing(folder) == before
    assert "interrupted" in capsys.readouterr().err


def test_evaluate_failing_after_the_checks_leaves_no_file(folder, monkeypatch, capsys):
    import ntkdiagrams.numerics.evaluate as numerics

    def fails(*args, **kwargs):
        raise MemoryError("Unable to allocate 47.7 GiB")
    monkeypatch.setattr(numerics, "evaluate", fails)
    before = _listing(folder)
    assert main(EV + ["--out", str(folder / "p.json")]) == 2
    assert _listing(folder) == before and "out of memory" in capsys.readouterr().err


def test_compare_plot_is_written_atomically(folder, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    import ntkdiagrams.analysis.compare as analysis

    def half_written(rows, path):
        Path(path).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt
    monkeypatch.setattr(analysis, "plot", half_written)
    before = _listing(folder)
    assert main(["compare", str(folder / "pred.json"), str(folder / "mc.json"), "--plot",
                 str(folder / "c.png")]) == EXIT_INTERRUPTED
    assert _listing(folder) == before


def test_written_files_have_the_usual_permissions(folder):
    out = folder / "p.json"
    assert main(EV + ["--out", str(out)]) == 0
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


# --------------------------------------------------------------------------- memory

def test_evaluate_memory_grows_as_n4_and_counts_the_layers():
    from ntkdiagrams.numerics.memory import QUADRATURE_BYTES, evaluate_memory
    a = evaluate_memory(100, 3, ["V"], activation="tanh") - QUADRATURE_BYTES
    b = evaluate_memory(200, 3, ["V"], activation="tanh") - QUADRATURE_BYTES
    assert 15.5 < b / a < 16.5
    # depth 3, stats V: 3 stored V + one expectation tensor + 13.125 (index bookkeeping, 105 bytes per entry)
    # + 4 (einsum temporaries), in units of 8 N^4 bytes
    assert abs(b / (8 * 200 ** 4) - 21.125) < 0.01
    assert evaluate_memory(50, 10, ["V"], activation="tanh") > evaluate_memory(50, 3, ["V"], activation="tanh")
    assert evaluate_memory(50, 3, "all", activation="relu") > evaluate_memory(50, 3, "all", activation="tanh")
    assert evaluate_memory(50, 3, ["V"], output="json") > evaluate_memory(50, 3, ["V"])


def test_largest_fitting_and_available_memory():
    from ntkdiagrams.numerics.memory import available_memory, evaluate_memory, largest_fitting
    budget = 4 * 2 ** 30
    est = lambda n: evaluate_memory(n, 3, ["V"], activation="tanh")  # noqa: E731
    best = largest_fitting(est, budget, 1000)
    assert est(best) <= budget < est(best + 1)
    assert largest_fitting(est, 1, 1000) == 0 and largest_fitting(est, 2 ** 60, 10) == 10
    avail = available_memory()
    assert avail is None or (isinstance(avail, int) and avail > 0)


def test_sample_memory_counts_batches_and_four_index_statistics():
    from ntkdiagrams.sampling.sampler import sample_memory
    small = sample_memory(40, 3, 4, 2, ("G",))
    big = sample_memory(40, 3, 4, 2, ("G", "V"))
    assert big - small > 8 * 30 * 2 * 40 ** 4      # every batch's V at both layers
    assert sample_memory(40, 3, 4, 2, ("G", "V"), batches=60) > big


def test_memory_refusal_is_instant_and_names_the_estimate(capsys):
    assert main(["evaluate", "--random", "200,3", "--stats", "V", "--max-memory", "16"]) == 2
    err = capsys.readouterr().err
    assert "not enough memory" in err and "N = 200" in err and "GiB" in err
    assert "the largest N that fits is " in err and "--max-memory" in err


# --------------------------------------------------------------------------- progress

def test_evaluate_progress_line_with_eta():
    out = io.StringIO()
    p = LayerProgress(5, stream=out, delay=0.0)
    p(2, 5, 1.0)
    p(3, 5, 2.0)
    p(5, 5, 4.0)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("evaluate: layer 3/5 at work, 2 done,") and "eta" in lines[0]
    assert lines[1].startswith("evaluate: layer 4/5 at work, 3 done,") and "eta" in lines[1]
    assert lines[2].startswith("evaluate: 5/5 layers done")


def test_no_progress_for_short_runs():
    out = io.StringIO()
    with LayerProgress(3, stream=out, delay=3600.0) as p:
        p(2, 3, 0.01)
        p(3, 3, 0.02)
    assert out.getvalue() == ""
