"""ntkdiagrams: Feynman diagrams for the finite-width statistics of deep networks.

Public API
----------
``load_rules(name_or_path="mlp")``
    Load and validate a rule file (TOML; parsed, never executed).
``derive(tensor, rules=None, *, settings=None) -> Recursion``
    Derive the layer-to-layer recursion of a tensor (``"K"``, ``"G1"``, ``"V"``) from the
    rule file: Wick contractions of layer-(ℓ+1) parameters, cluster diagrams of layer ℓ,
    sum.  ``Recursion.text()``, ``.latex()``, ``.initial``; ``.diagrams`` carry their values
    (``.diagram_table(values=True)``, ``.diagram_latex()``), which add up to the right-hand side.
``derive_request("E[dH(i0,i1,i2;a0,a1,a2) z(i3;a3)]", order=None) -> RequestResult``
    Any correlator (full ``E[...]`` or connected ``Ec[...]``): its Kronecker decomposition into
    rule-file tensors (P, Q here) or generated ones, their recursions and diagrams, LaTeX.
``evaluate(activation, depth, inputs, *, cb, cw, lb, lw, stats) -> list[dict]``
    Numbers: the recursions iterated from layer 1 for a data set of N inputs.
``evaluate_request(result, activation, depth, inputs, **kw) -> list[dict]``
    Numbers for every coefficient of a correlator request (``result.predict`` combines them).
``ModelSpec(activation, depth, width, cb, cw, lb, lw, inputs)``
    A network and data set for the sampler.
``sample(model, samples, *, seed, batches, stats) -> dict``
    Monte Carlo estimates from sampled finite-width networks (independent of the engine).
``parse_activation(text) -> Activation``
    An activation as a sympy expression in z with exact derivatives.
``critical_point(activation) -> CriticalPoint``
    Critical (C_b, C_W), K*, universality class (scale-invariant, K*=0, half-stable, none).
``depth_scaling(activation, depth, stats="all") -> DepthScaling``
    Normalised first-order tensors (V/K², A/Θ², …) per layer at criticality, with tail fits.

Errors derive from :class:`ntkdiagrams.errors.NtkDiagramsError`.
"""
__version__ = "0.1.0"

from .numerics.activations import parse_activation  # noqa: E402
from .errors import NtkDiagramsError  # noqa: E402
from .engine.derivation import derive  # noqa: E402
from .engine.recursion import Recursion  # noqa: E402
from .engine.request import RequestResult, derive_request  # noqa: E402
from .language.rulefile import load_rules  # noqa: E402
from .sampling.model import ModelSpec  # noqa: E402
from .analysis.criticality import CriticalPoint, critical_point, depth_scaling  # noqa: E402


# the function, not the submodule of the same name (a lazy wrapper would be shadowed by the
# submodule as soon as anything imports ``ntkdiagrams.numerics.evaluate``)
from .numerics.evaluate import evaluate, evaluate_request  # noqa: E402


def sample(*args, **kwargs):
    """See :func:`ntkdiagrams.sampling.sampler.sample`."""
    from .sampling.sampler import sample as _sample
    return _sample(*args, **kwargs)


__all__ = ["ModelSpec", "load_rules", "derive", "derive_request", "Recursion", "RequestResult", "evaluate",
           "evaluate_request", "sample", "parse_activation", "NtkDiagramsError", "critical_point", "depth_scaling",
           "CriticalPoint"]
