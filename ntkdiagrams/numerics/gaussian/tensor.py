"""The public entry points: whole expectation tensors, and one multivariate expectation.

:func:`expectation_tensor` returns, for factors f₁ … f_k (sympy expressions in
:data:`ntkdiagrams.numerics.activations.z`, 1 ≤ k ≤ :data:`MAX_FACTORS` = 8) and an (N, N) kernel K,
the tensor

    T[a₁, …, a_k] = E[ f₁(z_{a₁}) f₂(z_{a₂}) … f_k(z_{a_k}) ],   z ~ N(0, K),

for every index tuple, repeated indices included (the ⟨…⟩_K of docs/conventions.md).  Slots
with identical factors are permutation-symmetric, so only sorted index tuples within each such
group are computed.  Each tuple is reduced to its distinct variables and its deltas are
expanded (:mod:`.merge`); the remaining integral goes to the exact finite sum of trigonometric
factors (:mod:`.trigonometric`), the fast path (:mod:`.fast`), the closed-form orthant moments
(:mod:`.orthant`) or the exact cone method (:mod:`.cone`) as :mod:`.paths` chooses.  Two smooth
factors take the Hermite series over all pairs at once (:mod:`.series`) first (two
trigonometric factors: their exact sum first, the series where it is not accurate).

The integration methods handle at most :data:`MAX_VARIABLES` = 4 distinct variables per tuple.
Up to k = 4 factors every tuple has at most 4; for k > 4 factors the tensor needs N ≤ 4 inputs
(then the k slots of a tuple merge into ≤ 4 blocks, one per distinct input: ⟨σ⁶⟩, ⟨σ'²σ⁴⟩,
… of the order-1/n² recursions), and N > 4 with k > 4 is an UnsupportedError naming the limit.
:func:`gaussian_expectation`
does the same for one sum of products of univariate functions of given symbols.

Run-time settings (compiled kernel, threads) come from a :class:`.context.Quadrature` or a
:class:`ntkdiagrams.settings.Settings` (None: :func:`ntkdiagrams.settings.resolve`, the
environment); they never change a number.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import numpy as np
import sympy as sp

from ..activations import z
from ...errors import InputError, UnsupportedError
from ...settings import Settings
from .blocks import Block
from .context import Quadrature
from .erffamily import erf_factors
from .factors import Factor, as_sympy, canonical_z, prepare_factor
from .growth import check_integrable
from .merge import expect
from .paths import METHODS
from .series import applicable as series_applicable, series_tensor
from .trigonometric import integrate_trigonometric, trigonometric

__all__ = ["MAX_FACTORS", "MAX_VARIABLES", "check_correlations", "check_kernel", "check_variables",
           "symmetric_kernel", "expectation_tensor", "gaussian_expectation", "prepare_factors",
           "tensor_values"]

#: index tuples per call of :func:`tensor_values` (bounds the memory of one batch)
TUPLES_PER_BATCH = 4096
#: most factors of one expectation tensor (the six- and eight-point expectations of order 1/n²)
MAX_FACTORS = 8
#: most distinct Gaussian variables of one tuple that the integration methods handle (fast
#: path, orthant moments, cone method); k > MAX_VARIABLES factors therefore need N ≤ MAX_VARIABLES
MAX_VARIABLES = 4


def symmetric_kernel(K) -> np.ndarray:
    """K as a finite, symmetric (N, N) float array, symmetrised (tolerance 1e-10 relative);
    InputError otherwise.  The part of :func:`check_kernel` and :func:`check_correlations` that
    does not look at the eigenvalues."""
    try:
        A = np.asarray(K, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"kernel K must be a real (N, N) array ({exc})") from None
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise InputError(f"kernel K must be a square (N, N) matrix with N >= 1, got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise InputError("kernel K contains NaN or infinite entries")
    scale = max(float(np.max(np.abs(A))), 1e-300)
    if np.max(np.abs(A - A.T)) > 1e-10 * scale:
        raise InputError("kernel K is not symmetric (max |K - K^T| = "
                         f"{np.max(np.abs(A - A.T)):.3g})")
    A = 0.5 * (A + A.T)
    return A


def check_kernel(K) -> np.ndarray:
    """K as a symmetric positive semi-definite (N, N) float array (symmetrised); InputError
    otherwise (tolerance 1e-10 relative)."""
    A = symmetric_kernel(K)
    # a Cholesky factor of A + δ I (δ = 1e-10 max K_aa ≤ 1e-10 λ_max) proves λ_min > −δ, which
    # passes the test below; only where it fails are the eigenvalues computed (~20× the cost)
    dmax = float(np.max(np.diag(A)))
    if dmax > 0 and np.all(np.diag(A) >= 0):
        try:
            np.linalg.cholesky(A + 1e-10 * dmax * np.eye(A.shape[0]))
            return A
        except np.linalg.LinAlgError:
            pass
    ev = np.linalg.eigvalsh(A)
    if ev[0] < -1e-10 * max(ev[-1], 1e-300) or np.any(np.diag(A) < 0):
        raise InputError(f"kernel K is not positive semi-definite (smallest eigenvalue {ev[0]:.3g})")
    return A


def check_correlations(K) -> np.ndarray:
    """K as a symmetric (N, N) float array (symmetrised) whose 2 × 2 principal minors are
    positive semi-definite: K_aa ≥ 0 and K_ab² ≤ K_aa K_bb (1 + 1e-10); InputError otherwise.

    What a pair expectation needs (|ρ_ab| ≤ 1), in O(N²) and without LAPACK: for kernels made
    by a recursion that keeps them positive semi-definite (ntkdiagrams.numerics.evaluate checks
    each layer's kernel with it).  :func:`check_kernel` is the full test."""
    A = symmetric_kernel(K)
    d = np.diag(A)
    if np.any(d < 0) or np.any(A * A > np.outer(d, d) * (1 + 1e-10) + 1e-300):
        raise InputError("kernel K is not positive semi-definite (a 2 × 2 principal minor is negative)")
    return A


def check_variables(N: int, k: int) -> None:
    """UnsupportedError when a tensor of k factors over N inputs has tuples on more than
    :data:`MAX_VARIABLES` distinct inputs (k > 4 and N > 4)."""
    if min(N, k) > MAX_VARIABLES:
        raise UnsupportedError(
            f"an expectation tensor of {k} factors over N = {N} inputs has index tuples on more "
            f"than {MAX_VARIABLES} distinct inputs; the Gaussian integration handles at most "
            f"{MAX_VARIABLES} distinct variables per tuple, so more than {MAX_VARIABLES} factors "
            f"need N <= {MAX_VARIABLES} inputs")


def _check_options(degree, method) -> None:
    if degree is not None and (int(degree) != degree or degree < 1):
        raise InputError(f"degree must be a positive integer, got {degree!r}")
    if method not in METHODS:
        raise InputError(f"method must be 'auto', 'exact' or 'fast', got {method!r}")


def _quadrature(settings, quadrature):
    """The Quadrature to use and a context that closes it when it was made here."""
    if quadrature is not None:
        if settings is not None:
            raise InputError("give settings or quadrature, not both")
        if not isinstance(quadrature, Quadrature):
            raise InputError(f"quadrature must be a Quadrature; got {quadrature!r}")
        return nullcontext(quadrature)
    if settings is not None and not isinstance(settings, Settings):
        raise InputError(f"settings must be a ntkdiagrams.settings.Settings; got {settings!r}")
    return Quadrature(settings)


def prepare_factors(factors) -> list[Factor]:
    """The :class:`.factors.Factor` of each of 1 to :data:`MAX_FACTORS` sympy expressions in z."""
    if isinstance(factors, (sp.Basic, str)) or not isinstance(factors, Sequence):
        raise InputError("factors must be a sequence (list/tuple) of sympy expressions in z")
    k = len(factors)
    if not 1 <= k <= MAX_FACTORS:
        raise InputError(f"expectation_tensor supports 1 to {MAX_FACTORS} factors, got {k}")
    return [prepare_factor(canonical_z(f)) for f in factors]


def tensor_values(facs: list[Factor], K: np.ndarray, tuples: np.ndarray, degree,
                  method: str, quad: Quadrature) -> np.ndarray:
    """E[Π_s f_s(z_{a_s})] for the index tuples (n, k) of a checked kernel K.

    :class:`~ntkdiagrams.errors.NumericsError` (with ``inputs``, the first offending tuple, and
    ``reason``) when the expectation diverges or cannot be computed accurately: the factors'
    growth against the variance (:func:`.growth.check_integrable`)."""
    check_integrable([f.expr for f in facs], [_rate(f) for f in facs], K, tuples)
    C = K[tuples[:, :, None], tuples[:, None, :]]
    blocks = [Block([(f, np.ones(tuples.shape[0]))]) for f in facs]
    deltas = [np.full(tuples.shape[0], f.delta) for f in facs]
    if not any(f.delta for f in facs):
        deltas = None
    return expect(blocks, C, deltas, degree, method, quad)


def _rate(f: Factor):
    """The factor's quadratic growth rate max(c₊, c₋) over the known sides (None: both unknown)."""
    known = [c for c in f.growth if c is not None]
    return max(known) if known else None


def expectation_tensor(factors, K, *, degree=None, method="auto", settings: Settings | None = None,
                       quadrature: Quadrature | None = None) -> np.ndarray:
    """T[a₁…a_k] = E[f₁(z_{a₁}) … f_k(z_{a_k})] for z ~ N(0, K), all index tuples.

    Parameters
    ----------
    factors: 1 to :data:`MAX_FACTORS` (8) sympy expressions in
        :data:`ntkdiagrams.numerics.activations.z`; they may contain Max/Min/Abs/Heaviside with
        kinks at 0 and DiracDelta(z) (first order).
    K: (N, N) symmetric positive semi-definite covariance; N ≤ :data:`MAX_VARIABLES` (4) when
        there are more than 4 factors (UnsupportedError otherwise: a tuple on 5 or more distinct
        inputs is beyond the integration methods).
    degree: nodes per dimension of the cone method (default
        :data:`ntkdiagrams.numerics.gaussian.cone.DEFAULT_DEGREE_BY_DIM`); for the fast path:
        nodes per side of the split rules in every coordinate (default: the ladders of
        :mod:`ntkdiagrams.numerics.gaussian.ladder`).
    method: ``"auto"`` (default): without ``degree``, factors that are all trigonometric
        polynomials (σ = sin, its derivatives, powers, products) the exact finite sum of
        :mod:`ntkdiagrams.numerics.gaussian.trigonometric` wherever its rounding is small (all
        but small variances); factors of the erf family (erf, GELU, their derivatives, powers and
        products, at most four factors Φ per term) the closed-form orthant moments of
        :mod:`ntkdiagrams.numerics.gaussian.erffamily` (exact at any variance); two smooth factors of at most polynomial growth (k = 2, no
        ``degree``): the Hermite series over all pairs (:mod:`ntkdiagrams.numerics.gaussian.series`),
        and for the pairs it leaves, as for every other tensor, the fast path for tuples with
        ≥ 2 distinct variables whose
        factors are all smooth, not all polynomial, and whose effective variance is ≤
        :data:`ntkdiagrams.numerics.gaussian.ladder.FAST_MAX_VARIANCE`; closed-form orthant
        moments for piecewise-polynomial factors (ReLU family, ≥ 2 variables, well-conditioned
        correlations: :mod:`ntkdiagrams.numerics.gaussian.orthant`); the exact cone method
        otherwise.  ``"exact"``: always the cone method.  ``"fast"``: the fast path for every
        smooth tuple with ≥ 2 variables, whatever its variance.
    settings: run-time settings (compiled kernel, threads); None: those of the environment
        (:func:`ntkdiagrams.settings.resolve`).  A pool made for them is closed on return.
    quadrature: an open :class:`ntkdiagrams.numerics.gaussian.context.Quadrature` to use
        instead (its pool is shared between calls); not together with ``settings``.  K is
        checked by :func:`check_kernel` once per quadrature for equal arrays in a row
        (``quadrature.remember("kernel", K, check)``; a caller may check it otherwise first).

    Returns an array of shape (N,)*k.  Entries with two deltas on the same variable are NaN.
    Raises :class:`~ntkdiagrams.errors.NumericsError` (attributes ``inputs``, ``reason``) when an
    entry diverges or loses accuracy: a factor product growing like e^{c z²} against the
    variance, c ≥ 1/(2K) for one variable (:mod:`ntkdiagrams.numerics.gaussian.growth`).

    Examples
    --------
    >>> import numpy as np, sympy as sp
    >>> from ntkdiagrams.numerics.activations import z
    >>> T = expectation_tensor([sp.Max(0, z), sp.Max(0, z)], np.array([[1.0, 0.0], [0.0, 1.0]]))
    >>> bool(abs(T[0, 0] - 0.5) < 1e-12 and abs(T[0, 1] - 1 / (2 * np.pi)) < 1e-12)
    True
    """
    facs = prepare_factors(factors)
    _check_options(degree, method)
    with _quadrature(settings, quadrature) as quad:
        A = quad.remember("kernel", K, check_kernel)
        N, k = A.shape[0], len(facs)
        check_variables(N, k)
        if method == "auto" and degree is None and series_applicable(facs) and not erf_factors(facs):
            return _two_point(facs, A, quad)
        tuples = np.indices((N,) * k).reshape(k, -1).T
        # slots with identical factors are symmetric: compute sorted tuples only
        canon = tuples.copy()
        groups: dict = {}
        for s, f in enumerate(facs):
            groups.setdefault(f.expr, []).append(s)
        for slots in groups.values():
            if len(slots) > 1:
                canon[:, slots] = np.sort(canon[:, slots], axis=1)
        # unique rows through one integer key per tuple (np.unique(axis=0) sorts structured
        # rows, ~0.15 s for N = 16, k = 4)
        key = np.ravel_multi_index(canon.T, (N,) * k)
        ukey, inv = np.unique(key, return_inverse=True)
        uniq = np.stack(np.unravel_index(ukey, (N,) * k), axis=1)
        vals = np.empty(uniq.shape[0])
        per = TUPLES_PER_BATCH
        for a in range(0, uniq.shape[0], per):
            vals[a:a + per] = tensor_values(facs, A, uniq[a:a + per], degree, method, quad)
    return vals[np.ravel(inv)].reshape((N,) * k)


def _two_point(facs: list[Factor], A: np.ndarray, quad: Quadrature) -> np.ndarray:
    """Two smooth factors: the Hermite series (:mod:`.series`), and the general path for the
    index pairs it leaves.  Two trigonometric factors (:mod:`.trigonometric`) take their exact
    finite sum for every pair where it is accurate (all but small variances) and the series
    only where it is not: at large variances (≳ 300 for sin) the series' rules alias sin's
    Hermite coefficients, which then sit beyond the columns it computes."""
    N = A.shape[0]
    sym = facs[0] is facs[1]
    exact = None
    if trigonometric([Block([(f, np.ones(1))]) for f in facs]):
        a, b = (x.ravel() for x in np.indices((N, N)))
        blocks = [Block([(f, np.ones(N * N))]) for f in facs]
        val, ok = integrate_trigonometric(blocks, A[np.stack([a, b], 1)[:, :, None], np.stack([a, b], 1)[:, None, :]])
        quad.count("trigonometric_tuples", int(np.sum(ok)))
        if np.all(ok):
            return val.reshape(N, N)
        exact = (val.reshape(N, N), ok.reshape(N, N))
    horner = None
    if quad.wants_kernel(0):  # numba is loaded (or wanted): the pair sums compiled, the same numbers
        from . import compiled as gj
        horner = gj.pair_horner if gj.available() else None
    T, missing = series_tensor(facs, A, quad.tables, quad.remember, horner)
    quad.count("series_tuples", N * N - missing.shape[0] * (2 if sym else 1)
               + (int(np.sum(missing[:, 0] == missing[:, 1])) if sym else 0))
    for a in range(0, missing.shape[0], TUPLES_PER_BATCH):
        t = missing[a:a + TUPLES_PER_BATCH]
        T[t[:, 0], t[:, 1]] = v = tensor_values(facs, A, t, None, "auto", quad)
        if sym:
            T[t[:, 1], t[:, 0]] = v
    if exact is not None:
        T[exact[1]] = exact[0][exact[1]]
    return T


def _split_product(term: sp.Expr, variables) -> tuple[sp.Expr, dict] | None:
    coeff = sp.Integer(1)
    per: dict = {}
    for a in sp.Mul.make_args(term):
        fs = a.free_symbols & set(variables)
        if not fs:
            coeff *= a
        elif len(fs) == 1:
            v = fs.pop()
            per[v] = per.get(v, sp.Integer(1)) * a
        else:
            return None
    return coeff, per


def gaussian_expectation(expr, variables, cov, *, degree=None, method="auto",
                         settings: Settings | None = None,
                         quadrature: Quadrature | None = None) -> float:
    """E[expr] for the jointly Gaussian ``variables`` with covariance ``cov``.

    ``expr`` must be a sum of products of univariate functions of the variables (at most 4
    variables), e.g. ``tanh(x)*tanh(y)``, ``Max(0,x)*DiracDelta(y) + x*y``.  ``degree``,
    ``method``, ``settings``, ``quadrature`` as for :func:`expectation_tensor`.

    Examples
    --------
    >>> import sympy as sp
    >>> x, y = sp.symbols("x y")
    >>> round(gaussian_expectation(x**2 * y**2, [x, y], [[1, 0.5], [0.5, 2]]), 12)
    2.5
    """
    variables = list(variables)
    if not 1 <= len(variables) <= 4 or len(set(variables)) != len(variables):
        raise InputError("variables must be 1 to 4 distinct sympy symbols")
    A = check_kernel(cov)
    _check_options(degree, method)
    if A.shape[0] != len(variables):
        raise InputError(f"cov has shape {A.shape} but there are {len(variables)} variables")
    e = as_sympy(expr, "expression")
    extra = e.free_symbols - set(variables)
    if extra:
        raise InputError(f"expression contains symbols {sorted(map(str, extra))} not among the variables")
    terms = []
    for t in sp.Add.make_args(e):
        sp_ = _split_product(t, variables)
        if sp_ is None:
            for t2 in sp.Add.make_args(sp.expand(t)):
                sp2 = _split_product(t2, variables)
                if sp2 is None:
                    raise UnsupportedError(f"term {t2} is not a product of univariate functions "
                                           f"of {variables}")
                terms.append(sp2)
        else:
            terms.append(sp_)
    total = 0.0
    with _quadrature(settings, quadrature) as quad:
        for coeff, per in terms:
            if not per:
                total += float(coeff)
                continue
            vs = [v for v in variables if v in per]
            facs = [prepare_factor(canonical_z(per[v].subs(v, z))) for v in vs]
            ids = np.array([[variables.index(v) for v in vs]])
            total += float(coeff) * float(tensor_values(facs, A, ids, degree, method, quad)[0])
    return total
