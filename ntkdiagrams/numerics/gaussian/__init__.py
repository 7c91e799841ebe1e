"""Gaussian expectations ⟨f₁ f₂ … f_k⟩_K of products of univariate functions.

The public API::

    expectation_tensor(factors, K, *, degree=None, method="auto", settings=None, quadrature=None)
    gaussian_expectation(expr, variables, cov, *, degree=None, method="auto", settings=None, ...)
    Quadrature(settings)            # compiled-kernel switch, thread pool, counters (closeable)
    exponential_form(g)             # g(z) = R(e^{κz}), or None

The package, by concern (docs/gaussian.md has the overview, the measurements and their dates):

=================  ==========================================================================
``tensor``         the entry points; symmetric slots, batches of index tuples
``factors``        a factor f = g + c δ(z): its branches at z ≷ 0, its exponential form
``growth``         growth rates log|f|/z² at ±∞; divergent or inaccurate expectations refused
``blocks``         the product of the factors that share one variable, per tuple
``merge``          coinciding inputs (merging) and Dirac deltas (conditioning)
``paths``          the choice of method per tuple (closed forms, fast path, cone method)
``cone``           the exact cone method (orthant cones, radial × angular rules)
``orthant``        piecewise-polynomial factors (ReLU family): closed-form orthant moments
``erffamily``      the erf family (erf, GELU, derivatives): orthant moments with one auxiliary
                   variable per factor Φ, in closed form at any variance
``trigonometric``  trigonometric factors (σ = sin): exact sums of characteristic functions
``series``         two smooth factors: all pairs by the Hermite (Mehler) series
``fast``           the fast path (nested rules in Cholesky coordinates, order search)
``ladder``         the fast path's rule per coordinate, from the slopes
``nested``         the nested sum in numpy (addition theorem for exponential forms)
``table``          the tabulated innermost integral G(μ, s) = E[f(μ + s ξ)]
``spacing``        each factor's table grid: the coarsest read within a tolerance (calibrated)
``compiled``       the nested sum compiled with numba (optional)
``elementary``     factors without an exponential form (GELU, erf, …) as data for ``compiled``
``rules``          quadrature rules (radial Gauss, Gauss–Legendre, simplex, split rules)
``stored``         quadrature tables kept on disk between processes (``cache_dir/tables``)
``interpolation``  4-point Lagrange formulas shared by ``table`` and ``compiled``
``linalg``         batched Cholesky factors
``context``        :class:`Quadrature`; the opt-in allocator change :func:`keep_heap`
=================  ==========================================================================
"""
from .cone import DEFAULT_DEGREE, DEFAULT_DEGREE_BY_DIM
from .context import Quadrature, keep_heap
from .factors import ExponentialForm, exponential_form
from .ladder import FAST_DEGREES, FAST_MAX_VARIANCE
from .tensor import expectation_tensor, gaussian_expectation

__all__ = ["DEFAULT_DEGREE", "DEFAULT_DEGREE_BY_DIM", "ExponentialForm", "FAST_DEGREES",
           "FAST_MAX_VARIANCE", "Quadrature", "expectation_tensor", "exponential_form",
           "gaussian_expectation", "keep_heap"]
