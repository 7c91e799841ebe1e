"""Rule files: an architecture declared as data (TOML), loaded and validated.

A rule file lists the fields of one layer, the parameters of a layer with their Gaussian
priors and learning rates, the layer map (the field of layer ℓ+1 in terms of parameters and
fields of layer ℓ), the first layer's map on the data, and the statistics to be recursed:
cumulants of fields with their decomposition into Kronecker structures and tensors at each
order in 1/n.  The schema is documented in ``docs/rules.md``.

Loading never executes anything: the file is read with :mod:`tomllib`, and each expression
is built by the whitelisting parser of :mod:`ntkdiagrams.language.expressions`.  Every problem raises
:class:`~ntkdiagrams.errors.RuleFileError` naming the file, the key and the problem.
"""
from __future__ import annotations

import itertools
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp
from sympy.core.function import AppliedUndef

from .algebra import InputGram, permutation_group, sigma, tensor_class, width_ratio_class
from .builtin import builtin_rules_dir
from ..errors import ExpressionError, RuleFileError
from .expressions import MAX_LENGTH, parse_expression

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib



RULES_DIR = builtin_rules_dir()

_TOP_KEYS = {"model", "symbols", "fields", "parameters", "layer_map", "first_layer",
             "statistics", "tensors"}
_RESERVED = {"sum", "delta", "n", "n0", "x"}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    neurons: int
    inputs: int
    latex: str
    description: str = ""
    tangent: tuple = ()
    slot_symmetries: tuple = ()   # permutations of (neuron, input) slot pairs that leave the field invariant
    derivatives: tuple = ()       # per slot, the parameter-sum labels of its derivative (tangent fields)


@dataclass(frozen=True)
class ParameterSpec:
    """A parameter tensor of layer ℓ+1: Cov(P[idx], P[idx']) = variance · Π_s δ(idx_s, idx'_s)."""

    name: str
    indices: tuple          # slot kinds: "out" (neuron of layer ℓ+1) or "in" (neuron of layer ℓ)
    variance: sp.Expr
    learning_rate: sp.Expr | None


@dataclass(frozen=True)
class LayerMap:
    """field(neuron; input) at layer ℓ+1 = rhs (parameters, sums over layer-ℓ neurons)."""

    field: str
    neuron: sp.Symbol
    input: sp.Symbol
    sum_indices: tuple
    rhs: sp.Expr
    text: str
    width: sp.Symbol        # the fan-in: the range of the sums
    shortcut: bool = False  # a field of layer ℓ at the map's own neuron, outside every sum (ξ z(i, a))


@dataclass(frozen=True)
class Leg:
    """One factor of a correlator: field(neurons; inputs)."""

    field: str
    neurons: tuple
    inputs: tuple


@dataclass(frozen=True)
class ExpansionTerm:
    """coefficient · n^{-order} · Π δ(pairs) · tensor(args) in a statistic's expansion."""

    deltas: frozenset       # frozenset of frozenset({i_a, i_b})
    tensor: str
    args: tuple             # input labels of the cumulant, in the tensor's slot order
    coefficient: sp.Expr
    order: int


@dataclass(frozen=True)
class StatisticSpec:
    name: str
    description: str
    legs: tuple             # tuple[Leg]
    terms: tuple            # tuple[ExpansionTerm]

    @property
    def neuron_indices(self) -> tuple:
        return tuple(i for leg in self.legs for i in leg.neurons)

    @property
    def input_labels(self) -> tuple:
        return tuple(a for leg in self.legs for a in leg.inputs)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    nlabels: int
    latex: str
    description: str
    symmetries: tuple       # permutations of slots, derived from the expansions

    @property
    def cls(self):
        return tensor_class(self.name, self.nlabels, self.symmetries, self.latex)


@dataclass
class RuleSet:
    """A loaded, validated rule file."""

    path: str
    name: str
    description: str
    width: sp.Symbol
    input_width: sp.Symbol
    activation: str
    symbols: dict
    fields: dict
    parameters: dict
    layer_maps: dict
    first_layer: dict
    statistics: dict
    tensors: dict
    source: str = field(repr=False, default="")
    width_ratio: type | None = None   # r: hidden layer ℓ has n_ℓ = r_ℓ n neurons (None: all n)
    symbol_defaults: dict = field(default_factory=dict)   # [symbols.X] default: name -> float

    def tensor(self, name: str) -> TensorSpec:
        return self.tensors[name]

    def __reduce__(self):
        """Pickled as its text (a rule set holds sympy classes made at load time, e.g. the width
        ratio r, which pickle cannot find by name): unpickling parses the same source again."""
        return (parse_rules, (self.source, self.path))

    def statistic_of(self, tensor: str) -> StatisticSpec:
        """The statistic whose expansion contains ``tensor``."""
        for st in self.statistics.values():
            if any(t.tensor == tensor for t in st.terms):
                return st
        raise KeyError(tensor)

    def gaussian_tensor(self) -> str:
        """The order-0 two-point tensor of the preactivation: it defines ⟨·⟩_K."""
        for st in self.statistics.values():
            if len(st.legs) == 2 and all(leg.field == "z" for leg in st.legs):
                for t in st.terms:
                    if t.order == 0:
                        return t.tensor
        raise RuleFileError(f"{self.path}: no statistic gives the order-0 two-point tensor of z "
                            "(the Gaussian kernel K)")


def _err(path, key, msg) -> RuleFileError:
    return RuleFileError(f"{path}: [{key}] {msg}")


def _check_keys(path, key, table, allowed: set, required: set = frozenset()):
    if not isinstance(table, dict):
        raise _err(path, key, f"must be a table, got {type(table).__name__}")
    unknown = set(table) - allowed
    if unknown:
        raise _err(path, key, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    missing = set(required) - set(table)
    if missing:
        raise _err(path, key, f"missing required key(s) {sorted(missing)}")


def _str(path, key, value) -> str:
    if not isinstance(value, str):
        raise _err(path, key, f"must be a string, got {type(value).__name__} {value!r}")
    return value


def _list(path, key, value) -> list:
    if not isinstance(value, list):
        raise _err(path, key, f"must be a list, got {type(value).__name__} {value!r}")
    return value


def _ident(path, key, value) -> str:
    value = _str(path, key, value)
    if not value.isidentifier() or value.startswith("_"):
        raise _err(path, key, f"{value!r} is not a valid name (identifier not starting with '_')")
    return value


def find_rules(name_or_path: str | Path) -> Path:
    """A rule file by path, or by name among the built-in rules (``mlp`` → rules/mlp.toml).

    A bare name (no ``.toml``, no folder part) is a built-in rule file even if a folder of that
    name happens to exist in the working directory."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.is_file():
        return p
    cand = RULES_DIR / f"{name_or_path}.toml"
    if cand.exists():
        return cand
    known = sorted(q.stem for q in RULES_DIR.glob("*.toml")) if RULES_DIR.exists() else []
    raise RuleFileError(f"no rule file {name_or_path!r} (built-in rule files: {known})")


def load_rules(name_or_path: str | Path = "mlp") -> RuleSet:
    """Load and validate a rule file (a path, or the name of a built-in one)."""
    path = find_rules(name_or_path)
    try:
        source = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(f"{path}: cannot read rule file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise RuleFileError(f"{path}: not a text (UTF-8) rule file: byte {exc.start} cannot be decoded") from None
    return parse_rules(source, str(path))


def parse_rules(source: str, path: str = "<string>") -> RuleSet:
    """Validate the text of a rule file and build a :class:`RuleSet`."""
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise RuleFileError(f"{path}: not valid TOML: {exc}") from None
    _check_keys(path, "top level", data, _TOP_KEYS, {"model", "fields", "parameters", "layer_map", "statistics"})
    for section in sorted(set(data) - {"model"}):
        if not isinstance(data[section], dict):
            raise _err(path, section, f"must be a table of tables such as [{section}.name], "
                                      f"got {type(data[section]).__name__}")

    model = data["model"]
    _check_keys(path, "model", model, {"name", "description", "width", "input_width", "activation",
                                       "width_ratio"},
                {"name", "width", "activation"})
    width = sp.Symbol(_ident(path, "model.width", model["width"]), positive=True)
    input_width = sp.Symbol(_ident(path, "model.input_width", model.get("input_width", "n0")), positive=True)
    act_name = _ident(path, "model.activation", model["activation"])

    symbols, defaults = {}, {}
    for sname, spec in data.get("symbols", {}).items():
        _ident(path, f"symbols.{sname}", sname)
        _check_keys(path, f"symbols.{sname}", spec, {"latex", "description", "default"})
        if sname in _RESERVED:
            raise _err(path, f"symbols.{sname}", f"{sname!r} is reserved")
        symbols[sname] = sp.Symbol(sname, real=True)
        if "default" in spec:
            d = spec["default"]
            if isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d):
                raise _err(path, f"symbols.{sname}.default", f"must be a finite number, got {d!r}")
            defaults[sname] = float(d)

    fields = {}
    for fname, spec in data["fields"].items():
        _ident(path, f"fields.{fname}", fname)
        _check_keys(path, f"fields.{fname}", spec, {"description", "neurons", "inputs", "latex", "tangent",
                                                    "slot_symmetries", "derivatives"},
                    {"neurons", "inputs"})
        for k in ("neurons", "inputs"):
            if not isinstance(spec[k], int) or isinstance(spec[k], bool) or not 1 <= spec[k] <= 8:
                raise _err(path, f"fields.{fname}.{k}", f"must be an integer in 1..8, got {spec[k]!r}")
        fields[fname] = FieldSpec(fname, spec["neurons"], spec["inputs"], spec.get("latex", fname),
                                  spec.get("description", ""),
                                  tuple(_list(path, f"fields.{fname}.tangent", spec.get("tangent", []))),
                                  _slot_symmetries(path, f"fields.{fname}.slot_symmetries",
                                                   spec.get("slot_symmetries", []), spec["neurons"]),
                                  _derivative_pattern(path, f"fields.{fname}.derivatives",
                                                      spec.get("derivatives", []), spec["neurons"]))
    if "z" not in fields or fields["z"].neurons != 1 or fields["z"].inputs != 1:
        raise _err(path, "fields", "a field 'z' with neurons = 1 and inputs = 1 (the preactivation) is required")

    parameters = {}
    base_names = {**symbols, width.name: width, input_width.name: input_width}
    for pname, spec in data["parameters"].items():
        _ident(path, f"parameters.{pname}", pname)
        if pname in fields or pname in symbols or pname in _RESERVED or pname == act_name:
            raise _err(path, f"parameters.{pname}", f"name {pname!r} clashes with another declaration")
        _check_keys(path, f"parameters.{pname}", spec, {"indices", "variance", "learning_rate"},
                    {"indices", "variance"})
        idx = spec["indices"]
        if not isinstance(idx, list) or not idx or any(i not in ("out", "in") for i in idx):
            raise _err(path, f"parameters.{pname}.indices", f"must be a non-empty list of 'out'/'in', got {idx!r}")
        variance = _parse(path, f"parameters.{pname}.variance", spec["variance"], base_names)
        lr = spec.get("learning_rate")
        lr = _parse(path, f"parameters.{pname}.learning_rate", lr, base_names) if lr is not None else None
        parameters[pname] = ParameterSpec(pname, tuple(idx), variance, lr)

    layer_maps = {}
    for fname, spec in data["layer_map"].items():
        layer_maps[fname] = _parse_map(path, f"layer_map.{fname}", fname, spec, fields, parameters,
                                       base_names, act_name, width, data_field=False)
    if "z" not in layer_maps:
        raise _err(path, "layer_map", "the layer map of the preactivation z is required")
    first_layer = {}
    for fname, spec in data.get("first_layer", {}).items():
        first_layer[fname] = _parse_map(path, f"first_layer.{fname}", fname, spec, fields, parameters,
                                        base_names, act_name, input_width, data_field=True)

    tensor_meta = data.get("tensors", {})
    statistics, tensor_args = {}, {}
    for stname, spec in data["statistics"].items():
        _ident(path, f"statistics.{stname}", stname)
        _check_keys(path, f"statistics.{stname}", spec, {"description", "cumulant", "expansion"},
                    {"cumulant", "expansion"})
        statistics[stname] = _parse_statistic(path, f"statistics.{stname}", stname, spec, fields,
                                              width, tensor_args, set(symbols) | set(parameters) | set(fields))
    tensors = {}
    for tname, nlabels in tensor_args.items():
        meta = tensor_meta.get(tname, {})
        _check_keys(path, f"tensors.{tname}", meta, {"latex", "description"})
        syms = _derive_symmetries(statistics, tname, fields)
        tensors[tname] = TensorSpec(tname, nlabels, meta.get("latex", tname), meta.get("description", ""), syms)
    extra = set(tensor_meta) - set(tensors)
    if extra:
        raise _err(path, "tensors", f"tensor(s) {sorted(extra)} appear in no statistic's expansion")
    ratio = None
    if "width_ratio" in model:
        rname = _ident(path, "model.width_ratio", model["width_ratio"])
        taken = set(symbols) | set(fields) | set(parameters) | set(tensors) | _RESERVED | \
            {width.name, input_width.name, act_name}
        if rname in taken:
            raise _err(path, "model.width_ratio", f"name {rname!r} clashes with another declaration")
        if any(m.shortcut for m in layer_maps.values()):
            raise _err(path, "model.width_ratio", "a layer map with a shortcut (a field at its own neuron) "
                                                  "needs equal widths; per-layer width ratios are not allowed")
        ratio = width_ratio_class(rname)
    rs = RuleSet(path, model["name"], model.get("description", ""), width, input_width, act_name, symbols,
                 fields, parameters, layer_maps, first_layer, statistics, tensors, source, ratio,
                 symbol_defaults=defaults)
    rs.gaussian_tensor()
    return rs


def _derivative_pattern(path, key, value, k) -> tuple:
    """Per slot the labels of its parameter derivatives; each label must occur in exactly two slots
    (a sum over parameters weighted by the learning rate).  E.g. the dNTK: [[mu, nu], [mu], [nu]]."""
    if not value:
        return ()
    if not isinstance(value, list) or len(value) != k or not all(isinstance(v, list) and v for v in value):
        raise _err(path, key, f"must be a list of {k} non-empty label lists")
    labels = [x for v in value for x in v]
    for x in labels:
        if not isinstance(x, str) or not x.isidentifier():
            raise _err(path, key, f"label {x!r} is not a name")
        if labels.count(x) != 2:
            raise _err(path, key, f"label {x!r} must occur in exactly two slots")
    return tuple(tuple(v) for v in value)


def _slot_symmetries(path, key, value, k) -> tuple:
    """Generators of the slot permutations a field is invariant under, e.g. [[1, 0]] for the NTK."""
    if not isinstance(value, list):
        raise _err(path, key, "must be a list of permutations such as [[1, 0]]")
    out = []
    for perm in value:
        if not isinstance(perm, list) or not all(type(q) is int for q in perm) or sorted(perm) != list(range(k)):
            raise _err(path, key, f"{perm!r} is not a permutation of 0..{k - 1}")
        out.append(tuple(perm))
    return tuple(out)


def _parse(path, key, text, names, functions=None):
    try:
        return parse_expression(_str(path, key, text), names=names, functions=functions or {}, where=f"{path}: [{key}]")
    except ExpressionError as exc:
        raise RuleFileError(str(exc)) from None


def _parse_map(path, key, fname, spec, fields, parameters, base_names, act_name, fan_in, data_field):
    if fname not in fields:
        raise _err(path, key, f"layer map for undeclared field {fname!r}")
    _check_keys(path, key, spec, {"neuron", "input", "sum_indices", "rhs"}, {"neuron", "input", "rhs"})
    if fields[fname].neurons != 1 or fields[fname].inputs != 1:
        raise _err(path, key, "only single-neuron fields have layer maps; multi-neuron fields (NTK, dNTK, ...) "
                              "are derived from the layer map by the chain rule")
    neuron = sp.Symbol(_ident(path, f"{key}.neuron", spec["neuron"]), integer=True)
    inp = sp.Symbol(_ident(path, f"{key}.input", spec["input"]))
    sums = tuple(sp.Symbol(_ident(path, f"{key}.sum_indices", s), integer=True)
                 for s in _list(path, f"{key}.sum_indices", spec.get("sum_indices", [])))
    index_names = {s.name: s for s in (neuron, inp, *sums)}
    clash = set(index_names) & (set(base_names) | set(parameters) | set(fields))
    if clash:
        raise _err(path, key, f"index name(s) {sorted(clash)} clash with declared names")

    def param_builder(p):
        spec_p = parameters[p]

        def build(*args):
            if len(args) != len(spec_p.indices):
                raise ExpressionError(f"parameter {p} takes {len(spec_p.indices)} indices, got {len(args)}")
            for a in args:
                if a not in (neuron, *sums):
                    raise ExpressionError(f"parameter {p}: indices must be the neuron index or summed indices")
            return sp.Function(p)(*args)
        return build

    def field_builder(f):
        fs = fields[f]

        def build(*args):
            if len(args) != fs.neurons + fs.inputs:
                raise ExpressionError(f"field {f} takes {fs.neurons} neuron and {fs.inputs} input indices")
            if data_field:
                raise ExpressionError(f"the first layer acts on the data x, not on field {f}")
            return sp.Function(f)(*args)
        return build

    def summation(j, expr):
        if j not in sums:
            raise ExpressionError(f"sum over {j}, which is not declared in sum_indices")
        return sp.Sum(expr, (j, 1, fan_in))

    def data(j, a):
        if not data_field:
            raise ExpressionError("the data x appears only in the first layer map")
        return sp.Function("x")(j, a)

    functions = {p: param_builder(p) for p in parameters}
    functions.update({f: field_builder(f) for f in fields})
    functions["sum"] = summation
    functions[act_name] = lambda arg: sigma(arg)
    functions["x"] = data
    rhs = _parse(path, f"{key}.rhs", spec["rhs"], {**base_names, **index_names}, functions)
    shortcut = any(a.func.__name__ in fields and a.args[0] == neuron for a in rhs.atoms(AppliedUndef))
    return LayerMap(fname, neuron, inp, sums, sp.expand(rhs), spec["rhs"], fan_in, shortcut)


def _syntax_tree(path, key, text):
    """Python's syntax tree of an expression, read only to collect its names (the restricted
    parser builds the expression); every failure is a RuleFileError."""
    import ast as _ast
    if len(text) > MAX_LENGTH:
        raise _err(path, key, f"expression longer than {MAX_LENGTH} characters")
    try:
        return _ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise _err(path, key, f"cannot parse: {exc.msg}") from None
    except ValueError as exc:       # Python 3.10: null bytes
        raise _err(path, key, f"cannot parse: {exc}") from None
    except (RecursionError, MemoryError):
        raise _err(path, key, "cannot parse: nested too deeply for Python's parser") from None


def _parse_statistic(path, key, stname, spec, fields, width, tensor_args, taken):
    legs = []

    def leg_builder(f):
        fs = fields[f]

        def build(*args):
            if len(args) != fs.neurons + fs.inputs:
                raise ExpressionError(f"field {f} takes {fs.neurons} neuron and {fs.inputs} input indices, "
                                      f"got {len(args)}")
            legs.append(Leg(f, tuple(args[:fs.neurons]), tuple(args[fs.neurons:])))
            return sp.Integer(1)
        return build

    # indices: every identifier not a field; collect by a first pass over the text
    import ast as _ast
    tree = _syntax_tree(path, f"{key}.cumulant", _str(path, f"{key}.cumulant", spec["cumulant"]))
    idx_names = sorted({n.id for n in _ast.walk(tree) if isinstance(n, _ast.Name)} - set(fields))
    for nm in idx_names:
        if nm.startswith("_") or nm in taken or nm in _RESERVED:
            raise _err(path, f"{key}.cumulant", f"index name {nm!r} is not allowed")
    index_syms = {nm: sp.Symbol(nm) for nm in idx_names}
    _parse(path, f"{key}.cumulant", spec["cumulant"], index_syms, {f: leg_builder(f) for f in fields})
    if not legs:
        raise _err(path, f"{key}.cumulant", "must be a product of fields such as 'z(i1, a1) * z(i2, a2)'")
    neurons = [i for leg in legs for i in leg.neurons]
    inputs = [a for leg in legs for a in leg.inputs]
    if len(set(neurons + inputs)) != len(neurons) + len(inputs):
        raise _err(path, f"{key}.cumulant", "every neuron and input index must be a distinct name")

    # expansion: delta(i, j), tensors T(a...), n, numbers
    found: dict = {}

    def delta(a, b):
        if a not in neurons or b not in neurons:
            raise ExpressionError("delta takes two neuron indices of the cumulant")
        return sp.KroneckerDelta(a, b)

    def tensor_builder(name):
        def build(*args):
            for a in args:
                if a not in inputs:
                    raise ExpressionError(f"tensor {name} takes input labels of the cumulant, got {a}")
            found.setdefault(name, len(args))
            if found[name] != len(args):
                raise ExpressionError(f"tensor {name} used with {found[name]} and {len(args)} indices")
            return sp.Function("T_" + name)(*args)
        return build

    text = _str(path, f"{key}.expansion", spec["expansion"])
    etree = _syntax_tree(path, f"{key}.expansion", text)
    called = {n.func.id for n in _ast.walk(etree) if isinstance(n, _ast.Call) and isinstance(n.func, _ast.Name)}
    tnames = sorted(called - {"delta"})
    for tn in tnames:
        if not tn.isidentifier() or tn.startswith("_") or tn in taken or tn in _RESERVED:
            raise _err(path, f"{key}.expansion", f"tensor name {tn!r} is not allowed")
    names = {s.name: s for s in neurons + inputs}
    names[width.name] = width
    functions = {"delta": delta, **{tn: tensor_builder(tn) for tn in tnames}}
    expr = sp.expand(_parse(path, f"{key}.expansion", text, names, functions))
    terms = []
    for term in sp.Add.make_args(expr):
        deltas, tens, coeff = [], [], sp.Integer(1)
        for f in sp.Mul.make_args(term):
            base, exp = f.as_base_exp()
            if isinstance(f, sp.KroneckerDelta):
                deltas.append(frozenset(f.args))
            elif isinstance(f, AppliedUndef) and f.func.__name__.startswith("T_"):
                tens.append(f)
            elif base == width and exp.is_integer:
                coeff *= f
            elif f.is_number:
                coeff *= f
            else:
                raise _err(path, f"{key}.expansion", f"unexpected factor {f} in term {term}")
        if len(tens) != 1:
            raise _err(path, f"{key}.expansion", f"each term needs exactly one tensor, got {term}")
        t = tens[0]
        c, pw = coeff.as_coeff_exponent(width)
        if not pw.is_integer or pw > 0 or c.has(width):
            raise _err(path, f"{key}.expansion", f"term {term}: coefficient must be a number times n^-k")
        terms.append(ExpansionTerm(frozenset(deltas), t.func.__name__[2:], tuple(t.args), c, int(-pw)))
    for tn, k in found.items():
        if tn in tensor_args and tensor_args[tn] != k:
            raise _err(path, f"{key}.expansion", f"tensor {tn} has {tensor_args[tn]} indices elsewhere, {k} here")
        tensor_args[tn] = k
    return StatisticSpec(stname, spec.get("description", ""), tuple(legs), tuple(terms))


def _derive_symmetries(statistics, tname, fields=None) -> tuple:
    """Slot permutations under which a tensor is invariant, from the symmetry of its cumulant.

    A cumulant is symmetric under permuting legs of the same field, and a field under the
    permutations of its (neuron, input) slot pairs that the rule file declares in
    ``slot_symmetries`` (the NTK: [[1, 0]], H_{i1 i2; a1 a2} = H_{i2 i1; a2 a1}; the dNTK:
    [[0, 2, 1]], symmetric in its last two slots only).  Where such a permutation maps the
    Kronecker structure of ``tname``'s term to itself, it fixes a permutation of its slots."""
    syms = set()
    for st in statistics.values():
        mine = [t for t in st.terms if t.tensor == tname]
        if not mine:
            continue
        t0 = mine[0]
        legs = st.legs
        k = len(legs)
        leg_perms = [p for p in itertools.permutations(range(k))
                     if all(legs[q].field == legs[p[q]].field for q in range(k))]
        slot_choices = []
        for leg in legs:
            spec = fields.get(leg.field) if fields else None
            n = len(leg.neurons)
            gens = spec.slot_symmetries if spec is not None else ()
            slot_choices.append(list(permutation_group(gens, n)) if gens else [tuple(range(n))])
        for lp in leg_perms:
            for sp_ in itertools.product(*slot_choices):
                nmap, amap = {}, {}
                for q in range(k):
                    src, dst = legs[q], legs[lp[q]]
                    perm = sp_[q]
                    for t in range(len(src.neurons)):
                        nmap[src.neurons[t]] = dst.neurons[perm[t]]
                        amap[src.inputs[t]] = dst.inputs[perm[t]]
                if frozenset(frozenset(nmap[i] for i in d) for d in t0.deltas) != t0.deltas:
                    continue
                new_args = tuple(amap[a] for a in t0.args)
                if sorted(map(str, new_args)) != sorted(map(str, t0.args)):
                    continue
                pos = {a: q for q, a in enumerate(t0.args)}
                syms.add(tuple(pos[a] for a in new_args))
    return tuple(sorted(syms))
