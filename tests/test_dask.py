"""The sampler and the blocked evaluator on a dask LocalCluster (the ``dask`` extra; loopback only).

One cluster of two worker processes serves the module.  The cluster results must equal those of
one process: bit for bit for the sampler (same seed, samples, batches, chunk, ``streams="chunks"``),
to 1e-12 for the evaluator (the same quadrature on the same index tuples).  A worker killed in the
middle of a run leaves it to complete with the same numbers; a task that keeps killing its workers
stops the run with a ClusterError; an output is never partial.  The whole file: about 35 s on 2
cores (the fast subset, ``-m "not slow"``, keeps the sampler's equality, the command line, the
scheduler names, the default path's imports and the atomic output).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the dask extra is not installed (CI installs it)")
pytest.importorskip("zarr", reason="the dask extra is not installed (CI installs it)")

from distributed import Client, LocalCluster  # noqa: E402

from ntkdiagrams.cli.main import main  # noqa: E402
from ntkdiagrams.errors import ClusterError, InputError  # noqa: E402
from ntkdiagrams.executors import DaskExecutor, parse_scheduler  # noqa: E402
from ntkdiagrams.numerics.activations import parse_activation  # noqa: E402
from ntkdiagrams.numerics.evaluate import evaluate  # noqa: E402
from ntkdiagrams.sampling.model import ModelSpec  # noqa: E402
from ntkdiagrams.sampling.sampler import chunk_plan, sample  # noqa: E402
from ntkdiagrams.settings import Settings  # noqa: E402

#: the numpy quadrature: no compile time in every fresh worker process (settings never change a number)
SETTINGS = Settings(jit=False, threads=1, cache_dir=None)


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0", silence_logs=50) as cluster, Client(cluster) as c:
        yield c


def _model(N=2, depth=3, width=8):
    x = np.random.default_rng(1).standard_normal((N, 3))
    return ModelSpec(parse_activation("tanh"), depth=depth, width=width, cb=0.1, cw=1.0, lb=1.0, lw=1.0, inputs=x)


def _same(a, b):
    assert len(a["layers"]) == len(b["layers"])
    for la, lb in zip(a["layers"], b["layers"]):
        for s in la:
            if s != "layer":
                assert np.array_equal(la[s]["mean"], lb[s]["mean"]), (la["layer"], s)
                assert np.array_equal(la[s]["stderr"], lb[s]["stderr"]), (la["layer"], s)


def _kill_one_worker(client):
    pid = sorted(client.run(os.getpid).values())[0]
    os.kill(pid, signal.SIGKILL)


def test_scheduler_names():
    assert parse_scheduler(None) == ("none", None)
    assert parse_scheduler("local") == ("local", None)
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    for bad in ("local:0", "local:x", "a b", 5):
        with pytest.raises(InputError):
            parse_scheduler(bad)
    assert chunk_plan(10, 3, 2) == [[2, 2], [2, 1], [2, 1]]


def test_default_path_imports_no_dask():
    code = ("import sys, ntkdiagrams, ntkdiagrams.cli.main, ntkdiagrams.sampling.sampler, "
            "ntkdiagrams.numerics.evaluate; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('dask', 'distributed', 'zarr')]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_sample_on_cluster_equals_one_process(client):
    m = _model()
    kw = dict(seed=5, batches=3, stats="K,Theta,V,A", chunk=70)
    one = sample(m, 400, streams="chunks", **kw)
    dist = sample(m, 400, scheduler=client, **kw)
    _same(one, dist)
    assert dist["meta"]["streams"] == "chunks" and dist["meta"]["chunk"] == 70
    assert dist["meta"]["samples"] == 400 and dist["meta"]["complete"]
    # the one-stream default is another (valid) draw, unchanged by this option
    default = sample(m, 400, **kw)
    assert "streams" not in default["meta"]
    assert not np.array_equal(default["layers"][0]["V"]["mean"], one["layers"][0]["V"]["mean"])


def test_sample_cli_scheduler_equals_streams_chunks(client, tmp_path):
    common = ["sample", "--depth", "2", "--width", "6", "--samples", "300", "--batches", "3", "--chunk", "40",
              "--stats", "K,V", "--quiet"]
    assert main(common + ["--scheduler", client.scheduler.address, "--out", str(tmp_path / "d.json")]) == 0
    assert main(common + ["--streams", "chunks", "--out", str(tmp_path / "o.json")]) == 0
    d = json.loads((tmp_path / "d.json").read_text())
    o = json.loads((tmp_path / "o.json").read_text())
    assert d["layers"] == o["layers"]


def _close(a, b, tol=1e-12):
    for la, lb in zip(a, b):
        for s in la:
            if s != "layer":
                A, Bv = np.asarray(la[s]), np.asarray(lb[s][...])
                assert A.shape == Bv.shape
                assert np.max(np.abs(A - Bv)) <= tol * max(1.0, np.max(np.abs(A))), (la["layer"], s)


@pytest.mark.slow  # a few seconds: the quadrature in fresh workers, or worker restarts
def test_evaluate_on_cluster_equals_in_memory(client, tmp_path):
    x = np.random.default_rng(2).standard_normal((5, 3))
    kw = dict(stats=["K", "G1", "V"], settings=SETTINGS, cb=0.1)
    mem = evaluate("tanh", 3, x, **kw)
    dist = evaluate("tanh", 3, x, scheduler=client, block=2, **kw)      # blocks of 2, 2 and 1 inputs
    _close(mem, dist)
    assert isinstance(dist[2]["V"], np.ndarray) and dist[2]["V"].shape == (5,) * 4
    # out of core in this process: the same numbers in FILE.zarr, nothing of the work folders left
    out = tmp_path / "v.zarr"
    z = evaluate("tanh", 3, x, out=str(out), block=3, meta={"note": "test"}, **kw)
    _close(mem, z)
    assert sorted(os.listdir(out)) == ["layer1", "layer2", "layer3", "zarr.json"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    import zarr

    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["meta"]["note"] == "test" and g.attrs["meta"]["block"] == 3


def test_evaluate_cli_zarr_on_cluster(client, tmp_path, monkeypatch):
    monkeypatch.setenv("NTKDIAGRAMS_JIT", "0")   # no compile time in the workers
    common = ["evaluate", "--stats", "K,V", "--depth", "2", "--random", "4,2", "--cb", "0.1"]
    assert main(common + ["--out", str(tmp_path / "m.json")]) == 0
    assert main(common + ["--scheduler", client.scheduler.address, "--block", "3",
                          "--out", str(tmp_path / "d.zarr")]) == 0
    import zarr

    m = json.loads((tmp_path / "m.json").read_text())
    g = zarr.open_group(str(tmp_path / "d.zarr"), mode="r")
    for layer in m["layers"]:
        for s in ("K", "V"):
            A = np.array(layer[s])
            assert np.max(np.abs(A - g[f"layer{layer['layer']}/{s}"][...])) <= 1e-12 * np.max(np.abs(A))
    assert g.attrs["meta"]["kind"] == "prediction"


def test_failed_run_leaves_no_partial_output(tmp_path):
    x = np.random.default_rng(3).standard_normal((3, 2))
    out = tmp_path / "v.zarr"
    out.mkdir()
    (out / "earlier").write_text("an earlier result")

    def stop(layer, depth, elapsed):
        if layer == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate("tanh", 3, x, stats=["K", "V"], out=str(out), settings=SETTINGS, progress=stop)
    assert os.listdir(out) == ["earlier"]                      # the earlier result, untouched
    assert sorted(os.listdir(tmp_path)) == ["v.zarr"]         # no temporary folder left


@pytest.mark.slow  # a few seconds: the quadrature in fresh workers, or worker restarts
def test_killed_worker_sample_completes_with_the_same_numbers(client):
    m = _model(depth=2)
    kw = dict(seed=9, batches=4, stats="K,V", chunk=25)
    one = sample(m, 1000, streams="chunks", **kw)
    killed = []

    def kill_once(done, total, elapsed):
        if not killed and done > 0:
            killed.append(done)
            _kill_one_worker(client)

    dist = sample(m, 1000, scheduler=client, progress=kill_once, **kw)
    assert killed and killed[0] < 1000                        # the kill came in the middle of the run
    _same(one, dist)
    client.wait_for_workers(2, timeout=60)


@pytest.mark.slow  # a few seconds: the quadrature in fresh workers, or worker restarts
def test_killed_worker_evaluate_completes(client):
    x = np.random.default_rng(4).standard_normal((4, 2))
    kw = dict(stats=["K", "G1", "V"], settings=SETTINGS)
    mem = evaluate("tanh", 3, x, **kw)
    killed = []

    def kill_after_layer_2(layer, depth, elapsed):
        if layer == 2 and not killed:
            killed.append(layer)
            _kill_one_worker(client)

    dist = evaluate("tanh", 3, x, scheduler=client, block=2, progress=kill_after_layer_2, **kw)
    assert killed
    _close(mem, dist)
    client.wait_for_workers(2, timeout=60)


@pytest.mark.slow  # a few seconds: the quadrature in fresh workers, or worker restarts
def test_task_that_kills_its_workers_is_a_cluster_error():
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=":0", silence_logs=50) as cluster, Client(cluster) as c:
        ex = DaskExecutor(c)
        with pytest.raises(ClusterError, match="killed its worker"):
            ex.result(ex.submit(os._exit, 1))
