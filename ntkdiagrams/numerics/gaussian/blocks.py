"""Blocks: the product of the factors that share one Gaussian variable, per index tuple.

After merging proportional slots (:mod:`.merge`), variable z_b carries the block

    F_b(z_b) = Π_{(f, α) ∈ members} f(α z_b),

with a scale α per index tuple (α = C_{st}/C_{ss} for a slot t merged into s, 1 otherwise).
Arrays of tuples are processed together: every member holds its α as an array over the
tuples of the batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .factors import Factor

__all__ = ["Block", "all_polynomial", "all_smooth"]


@dataclass
class Block:
    """Members (factor, α (n_t,)) of one variable, for a batch of n_t index tuples."""

    members: list[tuple[Factor, np.ndarray]]  # (factor, α (n_t,))

    def take(self, sel) -> "Block":
        """The block restricted to the tuples ``sel`` (index array or mask)."""
        return Block([(f, a[sel]) for f, a in self.members])

    def is_zero(self, s: int) -> np.ndarray:
        """Per tuple: the branch on sign(z) = s vanishes identically."""
        out = np.zeros(self.members[0][1].shape, bool) if self.members else np.zeros(0, bool)
        for f, a in self.members:
            pos = (a * s) > 0
            out |= np.where(pos, f.zero_plus, f.zero_minus)
        return out

    def evaluate(self, zz: np.ndarray, s) -> np.ndarray:
        """Branch product at zz (n_t, ...) on the region sign(z) = s (scalar or array
        broadcastable to zz): member f(α z) takes the branch of sign(α s)."""
        out = None
        for f, a in self.members:
            aa = a.reshape(a.shape + (1,) * (zz.ndim - 1))
            arg = zz if np.all(a == 1) else aa * zz
            if f.smooth:
                v = f.plus(arg)
            else:
                pos = (aa * s) > 0
                if np.all(pos):
                    v = f.plus(arg)
                elif not np.any(pos):
                    v = f.minus(arg)
                else:
                    v = np.where(pos, f.plus(arg), f.minus(arg))
            v = np.broadcast_to(v, zz.shape)
            out = np.array(v, dtype=float) if out is None else out * v
        return out

    def evaluate_smooth(self, zz: np.ndarray, sel) -> np.ndarray:
        """Π f(α z) at zz (T, ...) for smooth members (one branch), with the scales α of the
        tuples ``sel`` (T,)."""
        out = None
        for f, a in self.members:
            aa = a[sel].reshape((-1,) + (1,) * (zz.ndim - 1))
            v = f.plus(zz if np.all(aa == 1) else aa * zz)
            v = np.broadcast_to(v, zz.shape)
            out = np.array(v, dtype=float) if out is None else out * v
        return out

    def value_at0(self) -> np.ndarray:
        """Per tuple: Π g(0) of the members (Heaviside(0) = 1/2)."""
        n = self.members[0][1].shape[0]
        v = np.ones(n)
        for f, _ in self.members:
            v = v * f.at0
        return v

    def poly_degree(self) -> int | None:
        """Total polynomial degree of the branches, None if a member is not polynomial."""
        d = 0
        for f, _ in self.members:
            if f.degree is None:
                return None
            d += f.degree
        return d


def all_smooth(blocks: list[Block]) -> bool:
    """Every member is smooth (one analytic branch) and free of deltas."""
    return all(f.smooth and f.delta == 0 for b in blocks for f, _ in b.members)


def all_polynomial(blocks: list[Block]) -> bool:
    """Every member's branches are polynomials."""
    return all(f.degree is not None for b in blocks for f, _ in b.members)

