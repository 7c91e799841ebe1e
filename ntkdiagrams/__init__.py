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
``train_prediction(activation, depth, x_train, y_train, x_test, *, lr, steps, width) -> TrainingPrediction``
    Gradient descent on width-n networks (docs/training.md): for each number of steps T (``inf``:
    converged) the ensemble mean and covariance of the outputs, at infinite width (kernel
    gradient descent) plus the coefficient of 1/n, from the output layer's 14 statistics.
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

``Settings`` (``ntkdiagrams.settings``)
    How to run (compiled kernel, threads, cache folder, allocator), never what to compute; every
    entry point takes ``settings=None`` (read from the ``NTKDIAGRAMS_*`` environment variables).

Errors derive from :class:`ntkdiagrams.errors.NtkDiagramsError` (a divergent or non-finite
number: :class:`~ntkdiagrams.errors.NumericsError`); ``evaluate(..., width=n)`` attaches the
expansion health and warns with :class:`~ntkdiagrams.numerics.health.ExpansionWarning` where the
1/n expansion is out of its range.  With a shortcut (rules/resmlp.toml, ξ ≠ 0) the first-order
tensors that miss terms from layer 3 on are refused (``allow_incomplete=True`` computes them with a
:class:`~ntkdiagrams.numerics.closure.ClosureWarning`; docs/conventions.md §8).  Gaussian
expectations of smooth activations beyond the calibrated variance range (effective variance > 60)
warn with :class:`~ntkdiagrams.numerics.gaussian.cone.AccuracyWarning`.
"""
__version__ = "0.1.0"

# The facade is lazy (PEP 562): ``import ntkdiagrams`` (and so ``import ntkdiagrams.cli``, which
# runs this file first) imports no sympy, numpy or networkx; each public name is imported from its
# stage the first time it is used.  ``ntkdiagrams.evaluate`` is the function: no submodule of this
# package is called ``evaluate`` (the module is ``ntkdiagrams.numerics.evaluate``).
_PUBLIC = {
    "parse_activation": "ntkdiagrams.numerics.activations",
    "NtkDiagramsError": "ntkdiagrams.errors",
    "NumericsError": "ntkdiagrams.errors",
    "ExpansionWarning": "ntkdiagrams.numerics.health",
    "ClosureWarning": "ntkdiagrams.numerics.closure",
    "AccuracyWarning": "ntkdiagrams.numerics.gaussian.cone",
    "Settings": "ntkdiagrams.settings",
    "Recursion": "ntkdiagrams.engine.recursion",
    "derive": "ntkdiagrams.engine.derivation",
    "derive_request": "ntkdiagrams.engine.request",
    "RequestResult": "ntkdiagrams.engine.request",
    "load_rules": "ntkdiagrams.language.rulefile",
    "train_prediction": "ntkdiagrams.training.prediction",
    "TrainingPrediction": "ntkdiagrams.training.prediction",
    "ModelSpec": "ntkdiagrams.sampling.model",
    "CriticalPoint": "ntkdiagrams.analysis.criticality",
    "critical_point": "ntkdiagrams.analysis.criticality",
    "depth_scaling": "ntkdiagrams.analysis.criticality",
    "evaluate": "ntkdiagrams.numerics.evaluate",
    "evaluate_request": "ntkdiagrams.numerics.evaluate",
    "sample": "ntkdiagrams.sampling.sampler",
    "codegen": "ntkdiagrams.generation.generate",
}

__all__ = ["ModelSpec", "load_rules", "derive", "derive_request", "Recursion", "RequestResult", "evaluate",
           "evaluate_request", "sample", "parse_activation", "NtkDiagramsError", "NumericsError", "ExpansionWarning",
           "ClosureWarning", "AccuracyWarning", "Settings", "critical_point", "depth_scaling", "CriticalPoint", "codegen",
           "train_prediction", "TrainingPrediction"]


def __getattr__(name: str):
    """The public names of the facade, imported on first use."""
    if name in _PUBLIC:
        from importlib import import_module
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'ntkdiagrams' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
