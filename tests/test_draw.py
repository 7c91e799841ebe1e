"""Diagram drawing (ntkdiagrams.engine.drawing): TikZ export (compiled with pdflatex where available),
matplotlib figures (parallel edges as arcs, a legend, one figure per statistic) and the CLI."""
import shutil
import subprocess

import pytest

from ntkdiagrams.cli import main
from ntkdiagrams.engine.derivation import derive
from ntkdiagrams.engine.diagrams import merge_isomorphic
from ntkdiagrams.engine.drawing import (diagram_figure, diagrams_figure, edge_role, layout, role_description,
                                        tikz_document, tikz_feynman_document, tikz_legend, to_tikz, to_tikz_feynman)


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
    assert "weight propagator" in (tmp_path / "out" / "V_diagrams.tex").read_text()     # the legend
    assert "wrote" in capsys.readouterr().out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    # one file per diagram and all diagrams on one figure
    assert {p.name for p in (tmp_path / "out").glob("*.png")} == {"V_D1.png", "V_D2.png", "V_diagrams.png"}


@pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("kpsewhich") is None
                    or not subprocess.run(["kpsewhich", "tikz-feynman.sty"], capture_output=True, text=True).stdout,
                    reason="pdflatex with tikz-feynman not installed")
def test_tikz_feynman_compiles(tmp_path):
    _assert_compiles(tmp_path, tikz_feynman_document([to_tikz_feynman(d, "V") for d in _topologies("V")]))


def _edge_patches(ax) -> list:
    return [p for p in ax.patches if (p.get_gid() or "").startswith("edge:")]


def test_parallel_edges_are_drawn_as_arcs():
    """Θ1's D1 (a G1 blob, two derivative legs) and D2 (a V blob, four) differ in their drawings:
    one patch per edge, parallel ones bent to different sides."""
    pytest.importorskip("matplotlib")
    topo = _topologies("Theta1")
    d1, d2 = topo[0], topo[1]
    assert {a.get("tensor") for _, a in d1.graph.nodes(data=True)} >= {"G1"}
    assert {a.get("tensor") for _, a in d2.graph.nodes(data=True)} >= {"V"}
    counts = []
    for d in (d1, d2):
        fig = diagram_figure(d, "Theta1")
        ax = fig.axes[0]
        patches = _edge_patches(ax)
        assert len(patches) == d.graph.number_of_edges()
        legs = [p for p in patches if p.get_gid() == "edge:d"]
        rads = sorted(float(p.get_connectionstyle().rad) for p in legs)
        assert len(set(rads)) == len(rads) and rads == [-r for r in reversed(rads)]   # distinct, symmetric
        counts.append(len(legs))
    assert counts == [2, 4]
    # the loops of a field on one site are drawn too (D3: the NTK H on the site)
    ax = diagram_figure(topo[2], "Theta1").axes[0]
    assert [p.get_gid() for p in _edge_patches(ax)].count("edge:field:H") == 1


def test_legend_names_every_kind():
    pytest.importorskip("matplotlib")
    topo = _topologies("Theta1")
    fig = diagram_figure(topo[0], "Theta1: D1")
    assert len(fig.legends) == 1
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "learning-rate contraction (lambda_b, lambda_W)" in texts
    assert "derivative leg of a blob (on z)" in texts
    assert any(t.startswith("neuron site") for t in texts) and any(t.startswith("blob") for t in texts)
    assert any(t.startswith("external leg") for t in texts)
    texts = [t.get_text() for t in diagram_figure(topo[2]).legends[0].get_texts()]
    assert any(t.startswith("weight propagator") for t in texts) and "a field H at its neuron site(s)" in texts
    k = _topologies("K")
    assert "bias propagator (C_b)" in [t.get_text() for t in diagrams_figure(k).legends[0].get_texts()]
    assert role_description(edge_role("lambda_W", ("leg", "insertion"))).startswith("learning-rate")
    assert edge_role("dH", ("blob", "site")) == "d:H" and edge_role("dH", ("site", "site")) == "field:dH"


def test_one_figure_with_a_panel_per_diagram():
    pytest.importorskip("matplotlib")
    topo = _topologies("Theta1")
    fig = diagrams_figure(topo, "Theta1")
    assert len(fig.axes) == len(topo) == 7
    for k, (ax, d) in enumerate(zip(fig.axes, topo), 1):
        title = ax.get_title()
        assert title.startswith(f"D{k} ×{d.multiplicity}") and f"n^{{{d.power}}}" in title
        assert len(_edge_patches(ax)) == d.graph.number_of_edges()
    assert len(fig.legends) == 1


def test_tikz_bends_parallel_edges_and_has_a_legend():
    topo = _topologies("Theta1")
    tex = to_tikz(topo[1], "Theta1: D2")               # four derivative legs on the V blob
    legs = [ln for ln in tex.splitlines() if "snake" in ln]
    assert len(legs) == 4 and sum("bend left" in ln for ln in legs) == 2 and sum("bend right" in ln for ln in legs) == 2
    assert len(set(legs)) == 4                          # four different arcs
    assert "bend" in to_tikz_feynman(topo[1])
    legend = tikz_legend(topo)
    assert "learning-rate contraction" in legend and "derivative leg of a blob" in legend
    assert legend.count("{") == legend.count("}")
    doc = tikz_document([to_tikz(d) for d in topo], legend=legend)
    assert doc.index("learning-rate contraction") < doc.index(r"\times 1")
    assert "Legend." in tikz_feynman_document([to_tikz_feynman(d) for d in topo], diagrams=topo)
