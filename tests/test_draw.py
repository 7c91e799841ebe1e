"""Diagram drawing: TikZ export (compiled with pdflatex where available) and the CLI."""
import shutil
import subprocess

import pytest

from ntkdiagrams.cli import main
from ntkdiagrams.engine.diagrams import (layout, merge_isomorphic, tikz_document, tikz_feynman_document, to_tikz,
                                         to_tikz_feynman)
from ntkdiagrams.engine.derivation import derive


def _topologies(name):
    rec = derive(name)
    return merge_isomorphic([d.copy() for d in rec.diagrams], labeled=False)


def test_tikz_of_v_diagrams():
    topo = _topologies("V")
    assert sorted(d.multiplicity for d in topo) == [1, 6]
    for d in topo:
        tex = to_tikz(d, "V")
        assert tex.count("{") == tex.count("}")
        assert tex.count(r"\node") == d.graph.number_of_nodes() + 1  # + the caption
        assert tex.count(r"\draw") == d.graph.number_of_edges()
        assert "n^{-1}" in tex
    blob = [d for d in topo if any(a.get("kind") == "blob" for _, a in d.graph.nodes(data=True))][0]
    assert "{$V$}" in to_tikz(blob)


def test_tikz_feynman_of_ntk_diagrams():
    for d in _topologies("Theta1") + _topologies("V"):
        tex = to_tikz_feynman(d, "T")
        assert tex.count("{") == tex.count("}") and tex.count("[") == tex.count("]")
        assert tex.count(r"\vertex") == d.graph.number_of_nodes()
        assert tex.count(" -- [") == d.graph.number_of_edges()
        kinds = {k for _, _, k in d.graph.edges(data="kind")}
        if "b" in kinds:
            assert "[scalar" in tex
        if any(k.startswith("lambda_") for k in kinds):
            assert "[ghost" in tex
    doc = tikz_feynman_document([to_tikz_feynman(d, "V") for d in _topologies("V")])
    assert doc.count(r"\begin{feynman}") == 2 and r"\usepackage[compat=1.1.0]{tikz-feynman}" in doc


def test_layout_puts_layers_in_rows():
    for d in _topologies("Theta1"):
        pos = layout(d.graph)
        for v, data in d.graph.nodes(data=True):
            assert pos[v][1] == {"leg": 3.0, "insertion": 2.0, "site": 1.0, "blob": 0.0}[data["kind"]]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_tikz_compiles(tmp_path):
    _assert_compiles(tmp_path, tikz_document([to_tikz(d, "V") for d in _topologies("V")]))


def _assert_compiles(folder, doc: str) -> None:
    (folder / "v.tex").write_text(doc)
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "v.tex"], cwd=folder,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]
    assert (folder / "v.pdf").exists()


def test_cli_draw(tmp_path, capsys):
    assert main(["derive", "V", "--draw", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "V_diagrams.tex").exists()
    assert r"\begin{feynman}" in (tmp_path / "out" / "V_feynman.tex").read_text()
    assert "wrote" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("kpsewhich") is None
                    or not subprocess.run(["kpsewhich", "tikz-feynman.sty"], capture_output=True, text=True).stdout,
                    reason="pdflatex with tikz-feynman not installed")
def test_tikz_feynman_compiles(tmp_path):
    _assert_compiles(tmp_path, tikz_feynman_document([to_tikz_feynman(d, "V") for d in _topologies("V")]))
