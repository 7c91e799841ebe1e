"""The ``ntkdiagrams`` command line.

Subcommands::

    ntkdiagrams derive K G1 V [--latex] [--diagrams] [--rules FILE]
    ntkdiagrams derive 'E[dH(i0,i1,i2;a0,a1,a2) z(i3;a3)]' [--order 1] [--connected] [--latex]
    ntkdiagrams evaluate --activation tanh --depth 5 --width 32 --random 4,3 --out pred.json
    ntkdiagrams sample   --activation tanh --depth 3 --width 32 --samples 10000 --out mc.json
    ntkdiagrams compare  pred.json mc.json
    ntkdiagrams critical --activation tanh [--depth 40] [--json]

Bad input is reported in one line on stderr with exit code 2; nothing is written.
"""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import NtkDiagramsError

LATEX_HEADER = r"""\documentclass{article}
\usepackage{amsmath}
\begin{document}
"""


def _derive(args) -> int:
    from ..engine.derivation import derive
    from ..language.rulefile import load_rules

    rules = load_rules(args.rules)
    names = args.statistics or ["K", "G1", "V"]
    requests = [nm for nm in names if "[" in nm]
    if requests:
        if len(requests) != len(names):
            from ..errors import InputError
            raise InputError("give either tensor names or correlator requests E[...], not both")
        return _derive_requests(requests, rules, args)
    if args.diagonal:
        return _derive_diagonal(names, rules, args)
    recs = [derive(name, rules) for name in names]
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


def _derive_requests(texts, rules, args) -> int:
    from ..engine.request import derive_request
    out = []
    for text in texts:
        res = derive_request(text, rules, order=args.order, connected=True if args.connected else None)
        if args.latex:
            out += [r"\begin{align}", res.latex(), r"\end{align}"]
        else:
            out += [res.text(), ""]
    print("\n".join(out))
    return 0


def _draw(recs, folder: str) -> str:
    """Write each contributing diagram as TikZ (and PNG with the plot extra) into ``folder``."""
    from pathlib import Path

    from ..engine.diagrams import (draw_png, merge_isomorphic, tikz_document, tikz_feynman_document, to_tikz,
                                   to_tikz_feynman)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written, pngs = [], 0
    for r in recs:
        topo = merge_isomorphic([d.copy() for d in r.diagrams], labeled=False)
        pics, feyn = [], []
        for k, d in enumerate(topo, 1):
            cap = f"{r.tensor}: D{k}"
            pics.append(to_tikz(d, cap))
            feyn.append(to_tikz_feynman(d, cap))
            pngs += draw_png(d, str(out / f"{r.tensor}_D{k}.png"), cap)
        path = out / f"{r.tensor}_diagrams.tex"
        path.write_text(tikz_document(pics))
        written.append(str(path))
        path = out / f"{r.tensor}_feynman.tex"
        path.write_text(tikz_feynman_document(feyn))
        written.append(str(path))
    note = f"; {pngs} PNG files" if pngs else " (install the plot extra for PNG files)"
    return "% wrote " + ", ".join(written) + note


def _derive_diagonal(names, rules, args) -> int:
    """Single-input recursions in closed form for a scale-invariant activation, and the proof
    (by induction over layers) that a tensor vanishes on the diagonal where it does."""
    from ..numerics.activations import parse_activation
    from ..analysis.diagonal import vanishes_on_diagonal

    if not args.activation:
        from ..errors import InputError
        raise InputError("--diagonal needs --activation (a scale-invariant one: relu, leaky_relu:a, linear)")
    act = parse_activation(args.activation)
    for name in names:
        proof = vanishes_on_diagonal(name, act, rules)
        if proof.vanishes:
            print(f"{name}_aa = 0")
        print("# " + proof.text().replace("\n", "\n# "))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ntkdiagrams",
                                description="Feynman-diagram engine for finite-width network statistics")
    p.add_argument("--version", action="version", version=f"ntkdiagrams {__version__}")
    sub = p.add_subparsers(dest="command")

    d = sub.add_parser("derive", help="derive layer-to-layer recursions from a rule file")
    d.add_argument("statistics", nargs="*",
                   help="tensors to derive (default: K G1 V), or correlator requests such as "
                        "'E[dH(i0,i1,i2;a0,a1,a2) z(i3;a3)]' (full moment) / 'Ec[...]' (connected)")
    d.add_argument("--order", type=int, default=None,
                   help="requests: highest power of 1/n kept (0 or 1; default: leading non-vanishing)")
    d.add_argument("--connected", action="store_true", help="requests: the connected cumulant (as Ec[...])")
    d.add_argument("--rules", default="mlp", help="rule file (path, or built-in name; default mlp)")
    d.add_argument("--latex", action="store_true", help="print LaTeX (an align environment)")
    d.add_argument("--standalone", action="store_true", help="with --latex: a complete LaTeX document")
    d.add_argument("--explicit", action="store_true",
                   help="resolve every derivative on the input labels instead of printing sums over beta")
    d.add_argument("--draw", metavar="FOLDER",
                   help="write the contributing diagrams as TikZ (FOLDER/T_diagrams.tex), TikZ-Feynman "
                        "(FOLDER/T_feynman.tex) and, with matplotlib, PNG")
    d.add_argument("--diagonal", action="store_true",
                   help="with --activation: single-input recursions in closed form; prints 0 where the "
                        "engine proves the tensor vanishes on the diagonal at every layer")
    d.add_argument("--activation", help="activation for --diagonal (scale-invariant: relu, leaky_relu:a, linear)")
    d.add_argument("--diagrams", action="store_true",
                   help="list the contributing diagrams with multiplicities and powers of n")
    d.set_defaults(func=_derive)

    for hook in _subcommand_parsers():
        hook(sub)
    return p


def _subcommand_parsers():
    """Subcommands living in their own modules (evaluate, sample, compare, critical)."""
    from ..analysis.compare import add_compare_parser
    from ..analysis.criticality import add_critical_parser
    from ..numerics.evaluate import add_evaluate_parser
    from ..sampling.sampler import add_sample_parser
    return [add_evaluate_parser, add_sample_parser, add_compare_parser, add_critical_parser]


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except NtkDiagramsError as exc:
        print(f"ntkdiagrams {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
