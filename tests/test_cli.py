"""The command line as its own stage: options, help, exit codes, and a parser that imports nothing heavy.

Behaviour of the subcommands themselves (numbers, files) is tested with the library stage they
drive (test_evaluate, test_montecarlo, test_compare, test_criticality, test_request, ...).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ntkdiagrams
from ntkdiagrams.cli import derive as derive_cli
from ntkdiagrams.cli import evaluate as evaluate_cli
from ntkdiagrams.cli import main
from ntkdiagrams.cli import sample as sample_cli
from ntkdiagrams.cli.main import SUBCOMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "sympy", "networkx", "scipy", "mpmath", "numba", "matplotlib")

MODEL = {"--activation", "--depth", "--width", "--cb", "--cw", "--lb", "--lw", "--inputs", "--random", "--seed"}
#: every option of every subcommand (the interface; a change here is a change for users)
OPTIONS = {
    "derive": {"statistics", "--order", "--connected", "--rules", "--latex", "--standalone", "--explicit",
               "--draw", "--diagonal", "--activation", "--diagrams", "--debug"},
    "evaluate": MODEL | {"--param", "--stats", "--request", "--order", "--degree", "--kinks", "--rules", "--out",
                         "--allow-incomplete", "--max-memory", "--debug", "--scheduler", "--block"},
    "sample": MODEL | {"--rules", "--param", "--samples", "--batches", "--stats", "--chunk", "--quiet", "--out", "--max-memory",
                       "--debug", "--streams", "--scheduler"},
    "compare": {"pred", "mc", "--stats", "--all", "--plot", "--max-z", "--debug"},
    "critical": {"--activation", "--depth", "--stats", "--k1", "--lb", "--lw", "--precise", "--json", "--debug",
                 "--rules"},
    "train": {"--activation", "--depth", "--width", "--cb", "--cw", "--lb", "--lw", "--rules", "--param", "--train",
              "--targets", "--test", "--seed", "--lr", "--lr-fraction", "--steps", "--all-neurons", "--without",
              "--allow-kinks", "--degree", "--out", "--debug"},
    "codegen": {"statistics", "--activation", "--rules", "--target", "--out", "--debug"},
}


def _python(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run this source tree's package in a fresh interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, *args], cwd=cwd or ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def _subparsers(parser: argparse.ArgumentParser) -> dict:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _options(parser: argparse.ArgumentParser) -> set:
    out = set()
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        out.update(a.option_strings or [a.dest])
    return out


def test_subcommands_and_their_options():
    subs = _subparsers(build_parser())
    assert list(subs) == ["derive", "evaluate", "sample", "compare", "critical", "train", "codegen"]
    assert [m.__name__.rsplit(".", 1)[1] for m in SUBCOMMANDS] == list(subs)
    for name, parser in subs.items():
        assert _options(parser) == OPTIONS[name], name
        assert parser.get_default("func").__module__ == f"ntkdiagrams.cli.{name}"


def test_top_level_help_exits_0_and_lists_the_subcommands():
    r = _python("-m", "ntkdiagrams", "--help")
    assert r.returncode == 0, r.stderr
    for name in OPTIONS:
        assert name in r.stdout
    assert "--version" in r.stdout
    bare = _python("-m", "ntkdiagrams")
    assert bare.returncode == 0 and bare.stdout == r.stdout


@pytest.mark.parametrize("name", list(OPTIONS))
def test_subcommand_help_exits_0_and_lists_its_options(name):
    r = _python("-m", "ntkdiagrams", name, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: ntkdiagrams {name}")
    for opt in OPTIONS[name]:
        assert opt in r.stdout, opt


def test_derive_help_lists_the_builtin_rule_files():
    r = _python("-m", "ntkdiagrams", "derive", "--help")
    text = " ".join(r.stdout.split())
    for name in ("mlp", "mlp_nobias", "resmlp"):
        assert name in text.split("built-in name:")[1].split(";")[0]


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"ntkdiagrams {ntkdiagrams.__version__}"


@pytest.mark.parametrize("argv,message", [
    (["nosuch"], "invalid choice: 'nosuch'"),
    (["derive", "--nosuch"], "unrecognized arguments: --nosuch"),
    (["evaluate", "--depth", "three"], "argument --depth: invalid int value: 'three'"),
    (["evaluate", "--kinks", "smooth"], "argument --kinks: invalid choice: 'smooth'"),
    (["evaluate", "--inputs", "x.npy", "--random", "2,3"], "not allowed with argument"),
    (["sample"], "the following arguments are required: --out"),
    (["compare", "pred.json"], "the following arguments are required: mc"),
    (["critical", "--k1"], "argument --k1: expected one argument"),
])
def test_usage_errors_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ntkdiagrams") and "error: " in err and message in err


def test_usage_error_from_a_fresh_interpreter():
    r = _python("-m", "ntkdiagrams", "nosuch")
    assert r.returncode == 2
    assert "invalid choice: 'nosuch'" in r.stderr and r.stdout == ""


@pytest.mark.parametrize("argv,message", [
    (["evaluate", "--depth", "0"], "ntkdiagrams evaluate: error: --depth must be >= 1"),
    (["evaluate", "--random", "2"], "ntkdiagrams evaluate: error: --random expects N,n0"),
    (["derive", "K", "--rules", "nosuch"], "ntkdiagrams derive: error: no rule file 'nosuch' (built-in rule "
                                            "files: ['mlp', 'mlp2', 'mlp_nobias', 'resmlp'])"),
    (["critical", "--depth", "-1", "--activation", "softplus"], "ntkdiagrams critical: error: --depth must be"),
])
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message) and captured.err.count("\n") == 1


def test_settings_from_the_environment_reach_the_subcommand(monkeypatch):
    seen = []
    monkeypatch.setattr(derive_cli, "run", lambda args: seen.append(args.settings) or 0)
    monkeypatch.setenv("NTKDIAGRAMS_THREADS", "3")
    monkeypatch.setenv("NTKDIAGRAMS_CACHE", "off")
    assert main(["derive", "K"]) == 0
    assert len(seen) == 1 and seen[0].threads == 3 and seen[0].cache_dir is None


def test_bad_settings_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("NTKDIAGRAMS_THREADS", "many")
    assert main(["derive", "K"]) == 2
    assert "ntkdiagrams derive: error: NTKDIAGRAMS_THREADS must be an integer" in capsys.readouterr().err


def test_subcommand_parsers_default_to_no_settings():
    """A parser built from one subcommand module (as the library-stage tests do) carries
    settings=None: the library then reads the environment itself."""
    parser = argparse.ArgumentParser(prog="ntkdiagrams")
    sample_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sample", "--out", "mc.json"])
    assert args.settings is None and args.func is sample_cli.run


def test_restated_constants_agree_with_the_library():
    from ntkdiagrams.numerics.evaluate import KINKS
    from ntkdiagrams.sampling.sampler import DEFAULT_STATS
    assert evaluate_cli.KINKS == KINKS
    assert sample_cli.DEFAULT_STATS == DEFAULT_STATS


def test_parser_and_facade_import_nothing_heavy():
    code = ("import sys\n"
            "import ntkdiagrams.cli.main\n"
            "from ntkdiagrams.cli.main import build_parser\n"
            "p = build_parser()\n"
            "p.format_help()\n"
            "for sub in ('derive', 'evaluate', 'sample', 'compare', 'critical'):\n"
            "    try:\n"
            "        p.parse_args([sub, '--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    r = _python("-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_facade_is_lazy_and_complete():
    names = ", ".join(ntkdiagrams.__all__)
    code = ("import sys, ntkdiagrams\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
            f"from ntkdiagrams import {names}\n"
            "from ntkdiagrams.numerics import evaluate as module\n"
            "print(callable(ntkdiagrams.evaluate), ntkdiagrams.evaluate is module.evaluate)\n")
    r = _python("-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["[]", "True True"]
    assert set(ntkdiagrams.__all__) <= set(dir(ntkdiagrams))
    with pytest.raises(AttributeError, match="nosuch"):
        ntkdiagrams.nosuch  # noqa: B018
