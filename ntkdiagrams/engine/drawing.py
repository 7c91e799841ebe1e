"""Drawings of Feynman diagrams (:class:`~ntkdiagrams.engine.diagrams.Diagram`): TikZ, TikZ-Feynman
and matplotlib (PNG/SVG), one picture per diagram and all diagrams of a statistic on one figure.

Every edge of the diagram's ``networkx.MultiGraph`` is drawn: parallel edges between the same two
nodes as arcs bent to alternate sides (matplotlib ``connectionstyle="arc3,rad=…"``, TikZ
``bend left=…``/``bend right=…``), so that multiplicities of propagators and of a blob's
derivative legs stay visible (Θ1's D1, a G1 blob with two derivative legs, and D2, a V blob with
four, differ in their drawings, not only in the blob's label); several self-loops on one node are
nested.  What each node and line means is in the legend (:data:`NODE_KINDS`,
:func:`edge_role`):

========================================  ==========================  ==================  =========
meaning (as in :mod:`.diagrams`)          matplotlib (PNG)            TikZ                Feynman
========================================  ==========================  ==================  =========
external leg: a layer-(ℓ+1) field, α      open circle, labelled α     open circle         empty dot
insertion: layer-ℓ function fed by W     grey square, with σσ, σ'σ'  square, with σσ, …  square dot
neuron site of layer ℓ (summed: n)        filled dot                  filled dot          dot
blob: a layer-ℓ statistic (G1, V, Θ1, …)  box with the tensor's name  grey ellipse        blob
bias propagator (C_b)                     dashed                      dashed              scalar
weight propagator (C_W/n, per end)        thick                       thick               plain
learning-rate contraction (λ_b, λ_W)      dotted, blue                dotted, blue        ghost
an insertion at its neuron site           thin, grey                  grey                plain
derivative leg of a blob on z             red                         snake, red          photon
a blob's leg on another field (H, dH, …)  dash-dot, orange            zigzag, orange      gluon
a field (H, dH, …) at its neuron sites    thick, green                double, green       double
========================================  ==========================  ==================  =========

Layout (:func:`layout`): legs on top, then insertions, neuron sites, blobs.
"""
from __future__ import annotations

import math
import re

import networkx as nx

from .diagrams import Diagram

__all__ = ["NODE_KINDS", "edge_role", "role_description", "layout", "to_tikz", "to_tikz_feynman",
           "tikz_legend", "tikz_document", "tikz_feynman_document", "draw_diagram", "diagram_figure",
           "diagrams_figure", "draw_png", "draw_figure_png"]

#: node kind -> what it is (legend text)
NODE_KINDS = {
    "leg": "external leg: layer-(l+1) field, input alpha",
    "insertion": "insertion: layer-l function fed by a weight propagator",
    "site": "neuron site of layer l (summed: a factor n)",
    "fixed": "fixed neuron of layer l: a leg's own neuron, reached by a shortcut (no factor n)",
    "blob": "blob: a layer-l statistic acting on sites",
}
_ROW = {"leg": 3.0, "insertion": 2.0, "site": 1.0, "fixed": 1.0, "blob": 0.0}
#: role -> (legend text, matplotlib style, TikZ style, TikZ-Feynman style)
_ROLES = {
    "b": ("bias propagator (C_b)", dict(color="k", ls="--", lw=1.3), "dashed", "scalar"),
    "W": ("weight propagator (C_W/n, one line per end)", dict(color="k", ls="-", lw=1.8), "thick", "plain"),
    "lambda": ("learning-rate contraction (lambda_b, lambda_W)", dict(color="tab:blue", ls=":", lw=1.8),
               "densely dotted, blue", "ghost"),
    "at": ("insertion at its neuron site", dict(color="0.55", ls="-", lw=1.0), "gray", "plain"),
    "d": ("derivative leg of a blob (on z)", dict(color="tab:red", ls="-", lw=1.3),
          "decorate, decoration={snake, amplitude=0.6mm}, red!75!black", "photon"),
    "shortcut": ("shortcut: the layer-l field at the leg's own neuron (xi z)", dict(color="tab:purple", ls="-.",
                 lw=1.5), "dash dot, violet", "charged scalar"),
}
_OTHER_BLOB_LEG = (dict(color="tab:orange", ls="-.", lw=1.5), "decorate, decoration={zigzag, amplitude=0.6mm}, "
                   "orange!80!black", "gluon")
_FIELD = (dict(color="tab:green", ls="-", lw=2.6), "double, green!50!black", "double")
_NODE_STYLE = {"leg": dict(marker="o", s=60, c="white"), "insertion": dict(marker="s", s=45, c="lightgray"),
               "site": dict(marker="o", s=60, c="black"), "fixed": dict(marker="s", s=60, c="dimgray"),
               "blob": dict(marker="s", s=420, c="lightsteelblue")}


# ----------------------------------------------------------------------------- structure

def edge_role(kind: str, ends=()) -> str:
    """The role of an edge of ``kind`` between nodes of kinds ``ends``: "b", "W", "lambda", "at",
    "d" (a blob's derivative leg on z), "d:F" (a blob's leg on a field F) or "field:F" (a field F
    at its neuron sites)."""
    if kind in ("b", "W", "at", "shortcut"):
        return kind
    if kind.startswith("lambda_"):
        return "lambda"
    if "blob" in ends:
        return "d" if kind == "d" else "d:" + kind[1:]
    return "field:" + kind


def role_description(role: str) -> str:
    """The legend text of an edge role (:func:`edge_role`)."""
    if role in _ROLES:
        return _ROLES[role][0]
    if role.startswith("d:"):
        return f"a blob's leg on a field {role[2:]}"
    return f"a field {role.split(':', 1)[1]} at its neuron site(s)"


def _mpl_style(role: str) -> dict:
    if role in _ROLES:
        return dict(_ROLES[role][1])
    return dict(_OTHER_BLOB_LEG[0] if role.startswith("d:") else _FIELD[0])


def _tikz_style(role: str) -> str:
    if role in _ROLES:
        return _ROLES[role][2]
    return _OTHER_BLOB_LEG[1] if role.startswith("d:") else _FIELD[1]


def _feynman_style(role: str) -> str:
    if role in _ROLES:
        return _ROLES[role][3]
    return _OTHER_BLOB_LEG[2] if role.startswith("d:") else _FIELD[2]


def layout(g: nx.MultiGraph) -> dict:
    """Explicit coordinates: legs on top (layer ℓ+1), insertions, neuron sites (layer ℓ; fixed
    neurons on the same row), blobs."""
    pos = {}
    rows: dict = {}
    for kind, yrow in _ROW.items():
        rows.setdefault(yrow, []).append(kind)
    for yrow, kinds in rows.items():
        nodes = sorted((v for v, d in g.nodes(data=True) if d["kind"] in kinds), key=repr)
        for i, v in enumerate(nodes):
            pos[v] = (1.6 * (i - (len(nodes) - 1) / 2), yrow)
    return pos


def _node_names(g) -> dict:
    return {v: f"v{i}" for i, v in enumerate(sorted(g.nodes, key=repr))}


def _edges(g, names: dict):
    """Every edge once as (u, v, kind, role, slot, count): u, v ordered by name (so that "bend left"
    means the same side for all edges between two nodes); ``slot`` the signed offset of the edge
    among the ``count`` edges between u and v (0 straight; ±0.5, ±1, ±1.5, … to either side,
    symmetric: 1 edge → 0; 2 → ±0.5; 3 → 0, ±1); for self-loops ``slot`` is 0, 1, 2, … (nested)."""
    kinds = dict(g.nodes(data="kind"))
    groups: dict = {}
    for u, v, data in g.edges(data=True):
        a, b = sorted((u, v), key=lambda t: names[t])
        groups.setdefault((a, b), []).append(data["kind"])
    for (a, b), ks in sorted(groups.items(), key=lambda t: (names[t[0][0]], names[t[0][1]])):
        m = len(ks)
        for k, kind in enumerate(sorted(ks)):
            if a == b:
                slot = float(k)
            else:
                slot = (k + 1) // 2 * (1 if k % 2 else -1) if m % 2 else (k // 2 + 0.5) * (1 if k % 2 == 0 else -1)
            yield a, b, kind, edge_role(kind, (kinds[a], kinds[b])), float(slot), m


def _role_key(r: str):
    order = list(_ROLES)
    return (order.index(r) if r in order else len(order) + r.startswith("field:"), r)


def _roles_of(*diagrams) -> list:
    """The edge roles that occur in ``diagrams``, in the legend's order."""
    roles = set()
    for d in diagrams:
        g = d.graph
        kinds = dict(g.nodes(data="kind"))
        roles |= {edge_role(k, (kinds[u], kinds[v])) for u, v, k in g.edges(data="kind")}
    return sorted(roles, key=_role_key)


def _node_kinds_of(*diagrams) -> list:
    present = {k for d in diagrams for _, k in d.graph.nodes(data="kind")}
    return [k for k in NODE_KINDS if k in present]


def _legend_handles(diagrams) -> dict:
    """{legend text: matplotlib handle} for the node kinds and edge roles of ``diagrams``."""
    from matplotlib.lines import Line2D

    handles = {}
    for k in _node_kinds_of(*diagrams):
        st = _NODE_STYLE[k]
        handles[NODE_KINDS[k]] = Line2D([], [], ls="", marker=st["marker"], markerfacecolor=st["c"],
                                        markeredgecolor="k", markersize=6 if k != "blob" else 9)
    for r in _roles_of(*diagrams):
        st = _mpl_style(r)
        handles[role_description(r)] = Line2D([], [], color=st["color"], ls=st["ls"], lw=st["lw"])
    return handles


def _power(d: Diagram, tex: bool) -> str:
    if tex:
        return "n^{0}" if d.power == 0 else f"n^{{{d.power}}}"
    return f"n^{d.power}"


def _function_tex(f: str) -> str:
    """``σ'σ''`` → ``\\sigma'\\sigma''`` (an insertion's activation factors in LaTeX)."""
    return re.sub(r"\^\((\d+)\)", r"^{(\1)}", f.replace("σ", r"\sigma ").replace(" '", "'")).strip()


# ----------------------------------------------------------------------------- TikZ

def _caption(d: Diagram, caption: str) -> str:
    return (rf"\node[below] at (current bounding box.south) {{{caption} $\times {d.multiplicity}$, "
            rf"${_power(d, True)}$}};")


def _tikz_bend(slot: float) -> str:
    if slot == 0:
        return ""
    ang = int(round(22 * abs(slot)))
    return f", bend {'left' if slot > 0 else 'right'}={ang}"


def to_tikz(d: Diagram, caption: str = "") -> str:
    """A ``tikzpicture`` of a diagram (plain TikZ; needs the decorations.pathmorphing and
    shapes.geometric libraries, as :func:`tikz_document` loads).  Parallel edges are bent
    (``bend left``/``bend right``), self-loops nested; insertions carry their function."""
    g = d.graph
    pos = layout(g)
    names = _node_names(g)
    lines = [r"\begin{tikzpicture}[baseline=(current bounding box.center)]"]
    for v, data in g.nodes(data=True):
        x, yv = pos[v]
        kind = data["kind"]
        if kind == "leg":
            label = data.get("label", "").replace("alpha_", r"\alpha_")
            lines.append(rf"  \node[circle, draw, inner sep=1.5pt, label=above:{{${label}$}}] ({names[v]}) at ({x:.2f},{yv:.2f}) {{}};")
        elif kind == "site":
            lines.append(rf"  \node[circle, fill, inner sep=2pt] ({names[v]}) at ({x:.2f},{yv:.2f}) {{}};")
        elif kind == "fixed":
            lines.append(rf"  \node[rectangle, fill, inner sep=2pt] ({names[v]}) at ({x:.2f},{yv:.2f}) {{}};")
        elif kind == "insertion":
            f = data.get("function", "")
            lab = rf", label={{[font=\scriptsize]right:${_function_tex(f)}$}}" if f else ""
            lines.append(rf"  \node[rectangle, draw, inner sep=1.5pt{lab}] ({names[v]}) at ({x:.2f},{yv:.2f}) {{}};")
        else:
            t = data.get("tensor", "")
            lines.append(rf"  \node[ellipse, draw, fill=gray!20] ({names[v]}) at ({x:.2f},{yv:.2f}) {{${t}$}};")
    for u, v, _kind, role, slot, _m in _edges(g, names):
        style = _tikz_style(role)
        if u == v:
            dist = 6 + 4 * slot
            lines.append(rf"  \draw[{style}] ({names[u]}) to[loop, out=30, in=-30, min distance={dist:g}mm] ({names[u]});")
        else:
            lines.append(rf"  \draw[{style}{_tikz_bend(slot)}] ({names[u]}) to ({names[v]});")
    lines.append("  " + _caption(d, caption or ""))
    lines.append(r"\end{tikzpicture}")
    return "\n".join(lines)


def tikz_legend(diagrams) -> str:
    """A ``tikzpicture`` legend of the node kinds and line styles that occur in ``diagrams``."""
    roles = _roles_of(*diagrams)
    nodes = _node_kinds_of(*diagrams)
    shape = {"leg": "circle, draw, inner sep=1.5pt", "insertion": "rectangle, draw, inner sep=1.5pt",
             "site": "circle, fill, inner sep=2pt", "fixed": "rectangle, fill, inner sep=2pt",
             "blob": "ellipse, draw, fill=gray!20, minimum width=5mm"}
    lines = [r"\begin{tikzpicture}[baseline=(current bounding box.north)]"]
    y = 0.0
    for k in nodes:
        lines.append(rf"  \node[{shape[k]}] at (0.4,{y:.2f}) {{}};")
        lines.append(rf"  \node[right, font=\small] at (1.0,{y:.2f}) {{{_tex_text(NODE_KINDS[k])}}};")
        y -= 0.45
    for r in roles:
        lines.append(rf"  \draw[{_tikz_style(r)}] (0,{y:.2f}) to (0.8,{y:.2f});")
        lines.append(rf"  \node[right, font=\small] at (1.0,{y:.2f}) {{{_tex_text(role_description(r))}}};")
        y -= 0.45
    lines.append(r"\end{tikzpicture}")
    return "\n".join(lines)


def _tex_text(s: str) -> str:
    for word, tex in (("lambda_b", r"$\lambda_b$"), ("lambda_W", r"$\lambda_W$"), ("C_b", "$C_b$"),
                      ("C_W/n", "$C_W/n$"), ("alpha", r"$\alpha$"), ("(l+1)", r"($\ell$+1)"),
                      ("layer-l", r"layer-$\ell$"), ("layer l", r"layer $\ell$"), (" n)", " $n$)")):
        s = s.replace(word, tex)
    return s


def tikz_document(pictures: list[str], legend: str | None = None) -> str:
    """A LaTeX document holding the pictures (plain article + TikZ: compiles with pdflatex), with
    ``legend`` (:func:`tikz_legend`) first where given."""
    body = "\n\\quad\n".join(pictures)
    if legend:
        body = legend + "\n\n\\medskip\\noindent\n" + body
    return ("\\documentclass{article}\n\\usepackage{tikz}\n"
            "\\usetikzlibrary{decorations.pathmorphing, shapes.geometric}\n"
            "\\pagestyle{empty}\n\\begin{document}\n\\noindent\n" + body + "\n\\end{document}\n")


_FEYNMAN_VERTEX = {"leg": "empty dot", "insertion": "square dot", "site": "dot", "fixed": "square dot",
                   "blob": "blob"}


def to_tikz_feynman(d: Diagram, caption: str = "") -> str:
    """The diagram as TikZ-Feynman code (package ``tikz-feynman``), with the explicit
    coordinates of :func:`layout`, so it compiles with pdflatex as well as lualatex.  Edge styles:
    bias propagator scalar (dashed), weight propagator plain, learning-rate contraction ghost
    (dotted), a blob's derivative leg photon (wavy); parallel edges bent to either side."""
    g = d.graph
    pos = layout(g)
    names = _node_names(g)
    lines = [r"\begin{tikzpicture}[baseline=(current bounding box.center)]", r"\begin{feynman}"]
    for v, data in sorted(g.nodes(data=True), key=lambda t: names[t[0]]):
        x, yv = pos[v]
        kind = data["kind"]
        style = _FEYNMAN_VERTEX.get(kind, "dot")
        text = ""
        if kind == "leg":
            style += ", label=above:{$" + data.get("label", "").replace("alpha_", r"\alpha_") + "$}"
        elif kind == "blob":
            text = "$" + data.get("tensor", "") + "$"
            style = "blob, minimum size=6mm"
        lines.append(rf"  \vertex[{style}] ({names[v]}) at ({x:.2f},{yv:.2f}) {{{text}}};")
    edges = []
    for u, v, _kind, role, slot, _m in _edges(g, names):
        style = _feynman_style(role)
        if u == v:
            style += f", loop, out=30, in=-30, min distance={6 + 4 * slot:g}mm"
        else:
            style += _tikz_bend(slot)
        edges.append(f"({names[u]}) -- [{style}] ({names[v]})")
    lines.append(r"  \diagram* {" + ",\n    ".join(edges) + "};")
    lines.append(r"\end{feynman}")
    lines.append(_caption(d, caption))
    lines.append(r"\end{tikzpicture}")
    return "\n".join(lines)


def _feynman_legend_text(diagrams) -> str:
    words = {"scalar": "dashed", "plain": "plain", "ghost": "dotted", "photon": "wavy", "gluon": "curly",
             "double": "double"}
    by_style: dict = {}
    for r in _roles_of(*diagrams):
        by_style.setdefault(_feynman_style(r), []).append(_tex_text(role_description(r)))
    parts = [f"{words.get(st, st)}: {', '.join(texts)}" for st, texts in by_style.items()]
    nodes = (r"open dot: external leg; square: insertion; dot: neuron site of layer $\ell$ (summed); "
             r"blob: a layer-$\ell$ statistic")
    return r"\noindent{\small Legend. " + nodes + ("; " + "; ".join(parts) if parts else "") + ".}\n"


def tikz_feynman_document(pictures: list[str], diagrams=None) -> str:
    """A LaTeX document holding TikZ-Feynman pictures, with a legend of the line styles of
    ``diagrams`` first where given."""
    body = "\n\\quad\n".join(pictures)
    if diagrams:
        body = _feynman_legend_text(diagrams) + "\n\\medskip\\noindent\n" + body
    return ("\\documentclass{article}\n\\usepackage[compat=1.1.0]{tikz-feynman}\n"
            "\\pagestyle{empty}\n\\begin{document}\n\\noindent\n" + body + "\n\\end{document}\n")


# ----------------------------------------------------------------------------- matplotlib

def draw_diagram(d: Diagram, ax, caption: str = "") -> dict:
    """Draw a diagram into a matplotlib ``Axes``: every edge one patch (gid ``"edge:<role>"``;
    parallel edges as arcs ``arc3,rad=…`` bent to alternate sides, self-loops as nested circles),
    nodes as markers, legs labelled with their input, insertions with their function, blobs with
    their tensor.  Returns the legend handles {label: artist} of what it drew."""
    from matplotlib.patches import Circle, FancyArrowPatch

    g = d.graph
    pos = layout(g)
    names = _node_names(g)
    kinds = dict(g.nodes(data="kind"))
    shrink = {"leg": 5, "insertion": 4, "site": 4, "fixed": 4, "blob": 12}
    for u, v, _kind, role, slot, _m in _edges(g, names):
        st = _mpl_style(role)
        x, y = pos[u]
        if u == v:
            r = 0.22 + 0.13 * slot
            ax.add_patch(Circle((x + r, y), r, fill=False, color=st["color"], ls=st["ls"], lw=st["lw"],
                                gid=f"edge:{role}", zorder=1))
            continue
        ax.add_patch(FancyArrowPatch(pos[u], pos[v], arrowstyle="-", connectionstyle=f"arc3,rad={0.3 * slot:g}",
                                     shrinkA=shrink[kinds[u]], shrinkB=shrink[kinds[v]], color=st["color"],
                                     ls=st["ls"], lw=st["lw"], gid=f"edge:{role}", zorder=1))
    for v, data in g.nodes(data=True):
        x, yv = pos[v]
        st = _NODE_STYLE[data["kind"]]
        if data["kind"] == "blob":   # a round box that fits the tensor's name
            ax.text(x, yv, data.get("tensor", ""), ha="center", va="center", fontsize=8, zorder=4,
                    bbox=dict(boxstyle="round,pad=0.45", fc=st["c"], ec="k"))
            continue
        ax.scatter([x], [yv], s=st["s"], c=st["c"], marker=st["marker"], edgecolors="k", zorder=3)
        if data["kind"] == "leg":
            ax.text(x, yv + 0.25, data.get("label", "").replace("alpha_", "α"), ha="center")
        elif data["kind"] == "insertion" and data.get("function"):
            left = x < 0   # beside the square, away from the lines to the site
            ax.text(x + (-0.15 if left else 0.15), yv, data["function"], ha="right" if left else "left",
                    va="center", fontsize=7, color="0.3")
    xs = [p[0] for p in pos.values()] or [0.0]
    ax.set_xlim(min(xs) - 1.1, max(xs) + 1.1)
    ax.set_ylim(-0.7, 3.6)
    ax.set_title(f"{caption} ×{d.multiplicity}, ${_power(d, True)}$".strip(), fontsize=9, pad=10)
    ax.axis("off")
    return _legend_handles([d])


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure


def diagram_figure(d: Diagram, caption: str = ""):
    """A standalone matplotlib ``Figure`` of one diagram with its legend (no pyplot state)."""
    Figure = _figure_class()
    nlegend = len(_node_kinds_of(d)) + len(_roles_of(d))
    legend_h = 0.17 * nlegend + 0.15
    fig = Figure(figsize=(3.4, 3.3 + legend_h))
    h = fig.get_figheight()
    ax = fig.add_axes((0.02, (legend_h + 0.1) / h, 0.96, 3.0 / h))
    handles = draw_diagram(d, ax, caption)
    fig.legend(list(handles.values()), list(handles), loc="lower center", fontsize=6.5, frameon=False, ncol=1)
    return fig


def diagrams_figure(diagrams: list, title: str = "", captions=None, ncols: int = 4):
    """All ``diagrams`` of a statistic on one ``Figure``: one panel (axes) per diagram, titled
    with its caption (default ``D1``, ``D2``, …), multiplicity and power of n, and one legend for
    all of them."""
    Figure = _figure_class()
    n = len(diagrams)
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    handles = _legend_handles(diagrams)
    legend_rows = math.ceil(len(handles) / 2)
    fig = Figure(figsize=(3.0 * ncols, 3.1 * nrows + 0.22 * legend_rows + 0.65))
    captions = captions or [f"D{k}" for k in range(1, n + 1)]
    for k, (d, cap) in enumerate(zip(diagrams, captions)):
        draw_diagram(d, fig.add_subplot(nrows, ncols, k + 1), cap)
    bottom = (0.22 * legend_rows + 0.25) / fig.get_figheight()
    fig.subplots_adjust(left=0.02, right=0.98, bottom=bottom, top=1 - 0.6 / fig.get_figheight(), wspace=0.05,
                        hspace=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.legend(list(handles.values()), list(handles), loc="lower center", fontsize=7, frameon=False, ncol=2)
    return fig


def draw_png(d: Diagram, path: str, caption: str = "") -> bool:
    """A PNG/SVG (by the file's extension) of one diagram with its legend (matplotlib, optional
    extra); False if matplotlib is missing.  Uses a standalone Figure: the pyplot backend is untouched."""
    if _figure_class() is None:
        return False
    diagram_figure(d, caption).savefig(path, dpi=150, bbox_inches="tight", pad_inches=0.1)
    return True


def draw_figure_png(diagrams: list, path: str, title: str = "", captions=None) -> bool:
    """A PNG/SVG of all ``diagrams`` on one figure (:func:`diagrams_figure`); False if matplotlib
    is missing."""
    if _figure_class() is None:
        return False
    diagrams_figure(diagrams, title, captions).savefig(path, dpi=150, bbox_inches="tight", pad_inches=0.1)
    return True
