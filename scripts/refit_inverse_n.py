#!/usr/bin/env python3
"""Refit a validation report's n(MC − pred) columns with an O(1/n²) term.

``validate_dntk.py`` fits MC − pred = c_∞ + c_1/n per component.  Where the Monte Carlo errors
are small and the widths start low (n = 16 at depth 4, ReLU with 5ℓ/n ≈ 1), the O(1/n²)
part of the remainder pulls that two-parameter c_∞ away from 0 (χ²/dof ≫ 1 in the table).
This script reads the per-component rows of a written report (columns "n(MC−pred) n=… (z)"
as v±e for the widths 16, 32, 64, 128), fits MC − pred = c_∞ + c_1/n + c_2/n², and prints
the z(c_∞) summaries per layer, case and tensor.

Usage:  python scripts/refit_inverse_n.py docs/validation/dntk.md
"""
import re
import sys

import numpy as np

WIDTHS = np.array([16.0, 32.0, 64.0, 128.0])


def rows(path):
    for line in open(path, encoding="utf-8"):
        p = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(p) < 10 or not re.fullmatch(r"\d{4}", p[4]):
            continue
        vals = [re.match(r"([-+0-9.e]+)±([0-9.e]+)", c.replace(" ", "")) for c in p[6:10]]
        if not all(vals):
            continue  # exactly-zero components (no error bar)
        nd = np.array([float(m.group(1)) for m in vals])
        ne = np.array([float(m.group(2)) for m in vals])
        yield p[0], int(p[2]), p[3], nd / WIDTHS, ne / WIDTHS


def zc_inf(d, e):
    X = np.stack([np.ones_like(WIDTHS), 1 / WIDTHS, 1 / WIDTHS ** 2], 1)
    w = 1 / e ** 2
    cov = np.linalg.inv(X.T @ (w[:, None] * X))
    beta = cov @ (X.T @ (w * d))
    return beta[0] / np.sqrt(cov[0, 0])


def summary(z):
    z = np.abs(np.asarray(z))
    return (f"{z.size} values, max |z| = {z.max():.2f}, within 2σ {np.mean(z < 2):.1%}, "
            f"within 3σ {np.mean(z < 3):.1%}, rms z = {np.sqrt(np.mean(z ** 2)):.2f}")


def main(path):
    data = [(case, layer, t, zc_inf(d, e)) for case, layer, t, d, e in rows(path)]
    print("c_∞ of MC − pred = c_∞ + c_1/n + c_2/n², vs 0")
    print("  all: " + summary([r[3] for r in data]))
    for key, idx in (("layer", 1), ("case", 0), ("tensor", 2)):
        for v in sorted({r[idx] for r in data}, key=str):
            sel = [r[3] for r in data if r[idx] == v and (key == "layer" or r[1] >= 3)]
            print(f"  {key} {v}{'' if key == 'layer' else ', layers ≥ 3'}: " + summary(sel))


if __name__ == "__main__":
    main(sys.argv[1])
