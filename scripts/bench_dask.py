"""Benchmark: the sampler and the blocked evaluator on dask (1 and 2 local workers) against one process.

Prints, per case, one JSON line: wall time; throughput (networks/s, or quadrature tuples/s); tasks
and the cost per task (wall × workers / tasks); the data a task moves (sample: the pickled moment sums
a chunk task returns; evaluate: the bytes a layer writes to the zarr store and the blocks its tasks
read back); the peak resident memory of the driver and of each worker (ru_maxrss).  Each case runs in
a fresh process (its own peak memory).  docs/scaling.md has the figures and the plan built on them.

    python3 scripts/bench_dask.py sample   [--samples 300000] [--width 32] [--depth 3] [--inputs 2]
    python3 scripts/bench_dask.py evaluate [--inputs 16] [--depth 3] [--block 8] [--stats V]
    python3 scripts/bench_dask.py evaluate --inputs 32 --block 16 --cases blocked   # memory at larger N
    python3 scripts/bench_dask.py probe --inputs 128 --block 32   # one task of each kind at N = 128

Needs the dask extra (pip install 'ntkdiagrams[dask]').
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

SAMPLE_CASES = ("one-stream", "chunks", "local:1", "local:2")
EVALUATE_CASES = ("in-memory", "blocked", "local:1", "local:2")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cluster(case):
    """(Client, cluster) for "local:W", or (None, None)."""
    if not case.startswith("local:"):
        return None, None
    import logging

    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=int(case.split(":")[1]), threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=":0", silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _worker_peaks(client) -> list[float]:
    def peak():
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return sorted(round(v, 1) for v in client.run(peak).values())


def _worker_cpu(client) -> float:
    """CPU seconds of all workers so far (user + system)."""
    def cpu():
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    return sum(client.run(cpu).values())


def run_sample(case: str, a) -> dict:
    from ntkdiagrams.numerics.activations import parse_activation
    from ntkdiagrams.sampling.model import ModelSpec
    from ntkdiagrams.sampling.networks import activation_derivatives
    from ntkdiagrams.sampling.sampler import (check_model, chunk_plan, chunk_requirements, chunk_sums, default_chunk,
                                              parse_stats, sample)

    x = np.random.default_rng(0).standard_normal((a.inputs, 3))
    model = ModelSpec(parse_activation(a.activation), depth=a.depth, width=a.width, cb=0.0, cw=1.0, lb=1.0,
                      lw=1.0, inputs=x)
    stats = parse_stats(a.stats)
    client, cluster = _cluster(case)
    kw = dict(seed=1, batches=a.batches, stats=stats, chunk=a.chunk)
    if case == "one-stream":
        kw["streams"] = "one"
    elif case == "chunks":
        kw["streams"] = "chunks"
    else:
        kw["scheduler"] = client
        sample(model, a.batches * 2, **{**kw, "chunk": 1})  # warm the workers (imports)
    c0, w0 = _cpu_s(), (_worker_cpu(client) if client else 0.0)
    t = time.perf_counter()
    sample(model, a.samples, **kw)
    wall = time.perf_counter() - t
    cpu = _cpu_s() - c0 + ((_worker_cpu(client) - w0) if client else 0.0)
    # one chunk task's result: what a worker hands on per task
    _x, program = check_model(model)
    needs, moments, order = chunk_requirements(stats)
    chunk = a.chunk or default_chunk(program.widths, a.inputs, needs)
    res = chunk_sums(program, _x, activation_derivatives(model.activation, order), 1, 0, chunk, needs, moments)
    tasks = sum(len(b) for b in chunk_plan(a.samples, a.batches, chunk))
    workers = int(case.split(":")[1]) if client else 1
    out = {"bench": "sample", "case": case, "samples": a.samples, "N": a.inputs, "width": a.width,
           "depth": a.depth, "stats": ",".join(stats), "chunk": chunk, "wall_s": round(wall, 2),
           "networks_per_s": round(a.samples / wall), "cpu_s": round(cpu, 2),
           "networks_per_cpu_s": round(a.samples / cpu), "chunk_tasks": tasks,
           "s_per_task_per_worker": round(wall * workers / tasks, 4),
           "bytes_per_task_result": len(pickle.dumps(res)), "driver_peak_mb": round(_peak_mb(), 1)}
    if client:
        out["worker_peak_mb"] = _worker_peaks(client)
        client.close()
        cluster.close()
    return out


def run_evaluate(case: str, a) -> dict:
    from ntkdiagrams.numerics.evaluate import evaluate
    from ntkdiagrams.settings import Settings

    x = np.random.default_rng(0).standard_normal((a.inputs, 3))
    settings = Settings.from_environment()
    client, cluster = _cluster(case)
    stats = a.stats.split(",")
    kw = dict(stats=stats, settings=settings, cb=0.0, cw=1.0)
    if client:
        evaluate(a.activation, 2, x[:2], scheduler=client, **kw)  # warm the workers (imports, compiled kernel)
    c0, w0 = _cpu_s(), (_worker_cpu(client) if client else 0.0)
    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        t = time.perf_counter()
        if case == "in-memory":
            res = evaluate(a.activation, a.depth, x, **kw)
        elif case == "blocked":
            res = evaluate(a.activation, a.depth, x, out=os.path.join(tmp, "r.zarr"), block=a.block, **kw)
        else:
            res = evaluate(a.activation, a.depth, x, scheduler=client, out=os.path.join(tmp, "r.zarr"),
                           block=a.block, **kw)
        wall = time.perf_counter() - t
    cpu = _cpu_s() - c0 + ((_worker_cpu(client) - w0) if client else 0.0)
    out = {"bench": "evaluate", "case": case, "N": a.inputs, "depth": a.depth, "stats": a.stats,
           "activation": a.activation, "block": a.block, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
           "driver_peak_mb": round(_peak_mb(), 1)}
    if res.blocked:
        tuples = sum(f["tuples"] for f in res.blocked)
        tasks = sum(f["gauss_tasks"] + f["contract_tasks"] for f in res.blocked)
        workers = int(case.split(":")[1]) if client else 1
        last = res.blocked[-1]
        out.update({"tuples": tuples, "tuples_per_s": round(tuples / wall, 1),
                    "tuples_per_cpu_s": round(tuples / cpu, 1), "tasks": tasks,
                    "s_per_task_per_worker": round(wall * workers / tasks, 4),
                    "per_layer": {k: last[k] for k in ("gauss_tasks", "tuples", "contract_tasks", "bytes_written",
                                                       "bytes_read")}})
    if client:
        out["worker_peak_mb"] = _worker_peaks(client)
        client.close()
        cluster.close()
    return out


def run_probe(a) -> dict:
    """Out of core at full size, one task of each kind: layer 1 of V (N⁴ on disk), then for layer 2 the
    diagonal canonical block of ⟨σσσσ⟩ (the quadrature on its distinct tuples, real numbers) and one
    block of the V contraction (read from arrays whose other blocks are left unwritten: time and
    memory of a real task, not the numbers).  Peak memory of this process after each step."""
    import zarr

    from ntkdiagrams.engine.derivation import derive
    from ntkdiagrams.language.rulefile import load_rules
    from ntkdiagrams.numerics.activations import parse_activation
    from ntkdiagrams.numerics.blocked import contract_block, gaussian_block, plan_terms
    from ntkdiagrams.numerics.evaluate import CompiledRecursion, evaluate
    from ntkdiagrams.numerics.hyperparameters import resolve_hyperparameters
    from ntkdiagrams.settings import Settings

    N, B = a.inputs, a.block
    x = np.random.default_rng(0).standard_normal((N, 3))
    settings = Settings.from_environment()
    out = {"bench": "probe", "N": N, "block": B, "activation": a.activation}
    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        root = os.path.join(tmp, "p.zarr")
        t = time.perf_counter()
        evaluate(a.activation, 1, x, stats=["K", "V"], out=root, block=B, settings=settings)
        out["layer1_s"] = round(time.perf_counter() - t, 2)
        out["peak_mb_after_layer1"] = round(_peak_mb(), 1)
        rules = load_rules("mlp")
        act = parse_activation(a.activation)
        keys = list(rules.symbols)
        hp = resolve_hyperparameters(rules, 2, None, dict(cb=None, cw=None, lb=None, lw=None))
        kernel = rules.tensors[rules.gaussian_tensor()].cls
        ids: dict = {}
        rec = CompiledRecursion(derive("V", rules), act, [rules.symbols[k] for k in keys], "auto", "per-network",
                                kernel)
        terms = plan_terms(rec, hp.layer(keys, 2), False, ids)
        K = np.asarray(zarr.open_array(store=root, path="layer1/K", mode="r")[...])
        gauss = {}
        for canon, gid in ids.items():
            gauss[gid] = f"work/gauss2/{gid}"
            zarr.open_array(store=root, path=gauss[gid], mode="w", shape=(N,) * len(canon),
                            chunks=(B,) * len(canon), dtype="f8")
        four = [(canon, gid) for canon, gid in ids.items() if len(canon) == 4][0]
        t = time.perf_counter()
        tuples = gaussian_block(root, gauss[four[1]], four[0], 0.5 * (K + K.T), (0, 0, 0, 0), B, None, settings)
        out["gauss_block_s"] = round(time.perf_counter() - t, 2)
        out["gauss_block_tuples"] = tuples
        out["peak_mb_after_gauss_block"] = round(_peak_mb(), 1)
        zarr.open_array(store=root, path="layer2/V", mode="w", shape=(N,) * 4, chunks=(B,) * 4, dtype="f8")
        gram = x @ x.T / x.shape[1]
        t = time.perf_counter()
        _bad, nbytes = contract_block(root, "layer2/V", {"K": "layer1/K", "V": "layer1/V"}, gauss, gram, terms, 4,
                                      (0, 1, 2, 3), B, N)
        out["contract_block_s"] = round(time.perf_counter() - t, 2)
        out["contract_block_bytes_read"] = nbytes
        out["peak_mb_after_contract_block"] = round(_peak_mb(), 1)
        out["disk_mb_layer1"] = round(sum(os.path.getsize(os.path.join(d, f)) for d, _s, fs in
                                          os.walk(os.path.join(root, "layer1")) for f in fs) / 2 ** 20, 1)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("sample", "evaluate", "probe"))
    p.add_argument("--cases", default=None, help="comma-separated subset of the cases")
    p.add_argument("--activation", default="tanh")
    p.add_argument("--inputs", type=int, default=None, help="N (sample: 2, evaluate: 16)")
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--samples", type=int, default=300000)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--chunk", type=int, default=None)
    p.add_argument("--stats", default=None, help="sample: K,G1,Theta,Theta1,V,A,B,D,F; evaluate: V")
    p.add_argument("--block", type=int, default=8)
    p.add_argument("--tmp", default=None, help="folder of the zarr store (default: the system's)")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)   # one case, in this process
    a = p.parse_args()
    if a.inputs is None:
        a.inputs = 2 if a.what == "sample" else 16
    if a.stats is None:
        a.stats = "K,G1,Theta,Theta1,V,A,B,D,F" if a.what == "sample" else "V"
    if a.what == "probe":
        print(json.dumps(run_probe(a)), flush=True)
        return
    if a.case:
        fn = run_sample if a.what == "sample" else run_evaluate
        print(json.dumps(fn(a.case, a)), flush=True)
        return
    cases = a.cases.split(",") if a.cases else (SAMPLE_CASES if a.what == "sample" else EVALUATE_CASES)
    print(f"# {' '.join(sys.argv)}  ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})", flush=True)
    for case in cases:
        r = subprocess.run([sys.executable, *sys.argv, "--case", case], capture_output=True, text=True)
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        print(line[-1] if line else f'{{"case": "{case}", "error": {json.dumps(r.stderr[-800:])}}}', flush=True)


if __name__ == "__main__":
    main()
