"""``ntkdiagrams derive``: recursions of rule-file tensors, correlator requests, diagonal proofs.

    ntkdiagrams derive K G1 V [--latex] [--diagrams] [--rules FILE]
    ntkdiagrams derive 'E[dH(i0,i1,i2;a0,a1,a2) z(i3;a3)]' [--order 1] [--connected] [--latex]
    ntkdiagrams derive Theta1 --diagonal --activation relu

Building the parser imports no sympy or networkx; :func:`run` imports the engine when it runs.
"""
from __future__ import annotations

import argparse

from .. import __version__
from ..errors import InputError
from ..language.builtin import builtin_rule_names
from .files import check_output_folder, check_rules_option

__all__ = ["LATEX_HEADER", "add_parser", "run"]

LATEX_HEADER = r"""\documentclass{article}
\usepackage{amsmath}
\begin{document}
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``derive`` (sets ``func=run``)."""
    d = subparsers.add_parser("derive", help="derive layer-to-layer recursions from a rule file")
    d.add_argument("statistics", nargs="*",
                   help="tensors to derive (default: K G1 V), or correlator requests such as "
                        "'E[dH(i0,i1,i2;a0,a1,a2) z(i3;a3)]' (full moment) / 'Ec[...]' (connected)")
    d.add_argument("--order", type=int, default=None,
                   help="requests: highest power of 1/n kept (0 … the rule file's order: 1 for mlp, 2 for mlp2; "
                        "default: leading non-vanishing)")
    d.add_argument("--connected", action="store_true", help="requests: the connected cumulant (as Ec[...])")
    builtin = ", ".join(builtin_rule_names()) or "none found"
    d.add_argument("--rules", default="mlp",
                   help=f"rule file (path, or built-in name: {builtin}; default mlp)")
    d.add_argument("--latex", action="store_true", help="print LaTeX (an align environment)")
    d.add_argument("--standalone", action="store_true", help="with --latex: a complete LaTeX document")
    d.add_argument("--explicit", action="store_true",
                   help="resolve every derivative on the input labels instead of printing sums over beta")
    d.add_argument("--draw", metavar="FOLDER",
                   help="write the contributing diagrams as TikZ (FOLDER/T_diagrams.tex), TikZ-Feynman "
                        "(FOLDER/T_feynman.tex) and, with matplotlib, PNG: one per diagram (FOLDER/T_D1.png, "
                        "...) and all on one figure (FOLDER/T_diagrams.png); parallel lines drawn as arcs, "
                        "with a legend")
    d.add_argument("--diagonal", action="store_true",
                   help="with --activation: single-input recursions in closed form; prints 0 where the "
                        "engine proves the tensor vanishes on the diagonal at every layer")
    d.add_argument("--activation", help="activation for --diagonal (scale-invariant: relu, leaky_relu:a, linear)")
    d.add_argument("--diagrams", action="store_true",
                   help="list the contributing diagrams with multiplicities, powers of n and values "
                        "(with --latex: one align line per diagram)")
    d.set_defaults(func=run, settings=None)
    return d


def run(args: argparse.Namespace) -> int:
    """Run ``derive``: print the recursions (text or LaTeX); 0 on success."""
    from ..engine.derivation import derive
    from ..language.rulefile import load_rules

    if args.draw:
        check_output_folder(args.draw, "--draw")
    check_rules_option(args.rules)
    names = args.statistics or ["K", "G1", "V"]
    requests = [nm for nm in names if "[" in nm]
    if requests and len(requests) != len(names):
        raise InputError("give either tensor names or correlator requests E[...], not both")
    if not requests and (args.order is not None or args.connected):
        raise InputError("--order and --connected apply to correlator requests E[...] only; "
                         f"{', '.join(names)} are tensors of the rule file")
    if requests and args.draw:
        raise InputError("--draw draws the diagrams of rule-file tensors, not of correlator requests")
    rules = load_rules(args.rules)
    if requests:
        return _requests(requests, rules, args)
    if args.diagonal:
        return _diagonal(names, rules, args)
    recs = [derive(name, rules, settings=args.settings) for name in names]
    out = []
    if args.latex:
        if args.standalone:
            out.append(LATEX_HEADER)
        out.append(f"% derived by ntkdiagrams {__version__} from {rules.path}")
        out.append(r"\begin{align}")
        out.append(" \\\\\n".join(r.latex(compact=not args.explicit) for r in recs))
        out.append(r"\end{align}")
    else:
        for r in recs:
            out.append(f"# {r.tensor}: order 1/n^{r.order} of statistic {r.statistic} "
                       f"(neuron indices {r.pattern})")
            out.append(r.text(compact=not args.explicit))
            out.append("")
    if args.diagrams:
        for r in recs:
            if args.latex:
                out.append(f"% diagrams of {r.tensor}: the right-hand side is the sum of multiplicity x D_k")
                out += [r"\begin{align}", r.diagram_latex(compact=not args.explicit), r"\end{align}"]
            else:
                out.append(f"diagrams of {r.tensor} (multiplicity, power of n, value):")
                out.append(r.diagram_table(values=True, compact=not args.explicit))
    if args.latex and args.standalone:
        out.append(r"\end{document}")
    if args.draw:
        out.append(_draw(recs, args.draw))
    print("\n".join(out))
    return 0


def _requests(texts, rules, args) -> int:
    from ..engine.request import derive_request

    out = []
    for text in texts:
        res = derive_request(text, rules, order=args.order, connected=True if args.connected else None,
                             settings=args.settings)
        if args.latex:
            out += [r"\begin{align}", res.latex(), r"\end{align}"]
        else:
            out += [res.text(), ""]
    print("\n".join(out))
    return 0


def _draw(recs, folder: str) -> str:
    """Write the contributing diagrams of each recursion into ``folder``: TikZ and TikZ-Feynman
    documents (T_diagrams.tex, T_feynman.tex, each with a legend), and with matplotlib one PNG per
    diagram (T_D1.png, …) and all of them on one figure (T_diagrams.png)."""
    from pathlib import Path

    from ..engine.diagrams import merge_isomorphic
    from ..engine.drawing import (draw_figure_png, draw_png, tikz_document, tikz_feynman_document, tikz_legend,
                                  to_tikz, to_tikz_feynman)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written, pngs = [], 0
    for r in recs:
        topo = merge_isomorphic([d.copy() for d in r.diagrams], labeled=False)
        pics, feyn, caps = [], [], []
        for k, d in enumerate(topo, 1):
            cap = f"{r.tensor}: D{k}"
            caps.append(f"D{k}")
            pics.append(to_tikz(d, cap))
            feyn.append(to_tikz_feynman(d, cap))
            pngs += draw_png(d, str(out / f"{r.tensor}_D{k}.png"), cap)
        if topo and draw_figure_png(topo, str(out / f"{r.tensor}_diagrams.png"),
                                    f"{r.tensor}: {len(topo)} diagram{'s' * (len(topo) != 1)}", caps):
            written.append(str(out / f"{r.tensor}_diagrams.png"))
        path = out / f"{r.tensor}_diagrams.tex"
        path.write_text(tikz_document(pics, legend=tikz_legend(topo) if topo else None))
        written.append(str(path))
        path = out / f"{r.tensor}_feynman.tex"
        path.write_text(tikz_feynman_document(feyn, diagrams=topo))
        written.append(str(path))
    note = f"; {pngs} PNG files, one per diagram" if pngs else " (install the plot extra for PNG files)"
    return "% wrote " + ", ".join(written) + note


def _diagonal(names, rules, args) -> int:
    """Single-input recursions in closed form for a scale-invariant activation, and the proof
    (by induction over layers) that a tensor vanishes on the diagonal where it does."""
    from ..analysis.diagonal import vanishes_on_diagonal
    from ..numerics.activations import parse_activation

    if not args.activation:
        raise InputError("--diagonal needs --activation (a scale-invariant one: relu, leaky_relu:a, linear)")
    act = parse_activation(args.activation)
    for name in names:
        proof = vanishes_on_diagonal(name, act, rules)
        if proof.vanishes:
            print(f"{name}_aa = 0")
        print("# " + proof.text().replace("\n", "\n# "))
    return 0
