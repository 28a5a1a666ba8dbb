"""Vector algebra: sums, differences, multiples and means of task vectors (or of function vectors) of
one model, kind and shape, as Todd et al. compose function vectors (v(last, capitalised) ≈ v(last) +
v(first, capitalised) − v(first)). `TaskVector`'s operators build on `combination`, which gives the
result's tensor, its `recipe` (the expression, `fv:list_last + fv:list_first_upper - fv:list_first`, and
every component's identity: the digest of its tensor, its task, layer, shots, contexts and seed) and the
settings its components share; anything else is refused in one line. Pure functions of the vectors'
fields: this module imports no vector class.

    composed = fv_last + fv_first_upper - fv_first
    halfway = TaskVector.mean([theta_a, theta_b])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

from torch import Tensor

from tv_lens.errors import TvLensError, TvLensTypeError

TERM_FIELDS = ("name", "coefficient", "task", "digest", "layer", "n_shots", "n_contexts", "seed", "heads")
_PREFIX = {"task_vector": "tv", "function_vector": "fv"}


def short_name(vector: Any) -> str:
    """`tv:<task>` or `fv:<task>` (the digest's first 8 digits when the vector names no task)."""
    return f"{_PREFIX.get(vector.kind, vector.kind)}:{vector.task or vector.digest()[:8]}"


def terms_of(vector: Any) -> list[dict]:
    """The components of `vector` with their coefficients: its recipe's terms, or the vector itself."""
    if vector.recipe:
        return [dict(term) for term in vector.recipe["terms"]]
    return [{"name": short_name(vector), "coefficient": 1.0, "task": vector.task, "digest": vector.digest(),
             "layer": vector.layer, "n_shots": vector.n_shots, "n_contexts": vector.n_contexts,
             "seed": vector.seed, "heads": [list(h) for h in vector.heads]}]


def expression(terms: Sequence[dict]) -> str:
    """The recipe as it reads: `fv:a + fv:b - fv:c`, `0.5 * tv:a`, `mean(tv:a, tv:b)`; `0` for no terms."""
    if not terms:
        return "0"
    coefficients = [t["coefficient"] for t in terms]
    if len(terms) > 1 and all(math.isclose(c, 1 / len(terms), rel_tol=1e-9) for c in coefficients):
        return f"mean({', '.join(t['name'] for t in terms)})"
    text = ""
    for i, term in enumerate(terms):
        size = abs(term["coefficient"])
        body = term["name"] if size == 1 else f"{size:g} * {term['name']}"
        if i == 0:
            text = ("-" if term["coefficient"] < 0 else "") + body
        else:
            text += (" - " if term["coefficient"] < 0 else " + ") + body
    return text


def check_coefficient(value) -> float:
    """A finite real number as a float; a one-line TvLensTypeError or TvLensError otherwise."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TvLensTypeError(f"a task vector is multiplied by a number, not by {type(value).__name__}")
    if not math.isfinite(value):
        raise TvLensError(f"a task vector cannot be multiplied by {value}: give a finite number")
    return float(value)


def check_combinable(vectors: Sequence[Any]) -> None:
    """Refuse, in one line, vectors of other models, kinds, hooks, shapes or prompt formats."""
    first = vectors[0]
    for other in vectors[1:]:
        why = None
        if other.kind != first.kind:
            why = f"a {first.kind.replace('_', ' ')} and a {other.kind.replace('_', ' ')} are different kinds"
        elif (other.fingerprint, other.model) != (first.fingerprint, first.model):
            why = (f"they come from different models ({first.model or '?'} weights {first.fingerprint or '?'}, "
                   f"{other.model or '?'} weights {other.fingerprint or '?'})")
        elif other.vectors.shape != first.vectors.shape:
            why = (f"their shapes differ ({first.n_layers}x{first.d_model} and "
                   f"{other.n_layers}x{other.d_model} layers x d_model)")
        elif other.hook != first.hook:
            why = f"they are read at different hooks ({first.hook} and {other.hook})"
        elif other.prompt_format != first.prompt_format:
            why = "they were learned with different prompt formats"
        if why:
            raise TvLensError(f"cannot combine {short_name(first)} and {short_name(other)}: {why}; combine vectors "
                              f"of one model, kind, hook, shape and prompt format")


def combination(parts: Sequence[tuple[float, Any]]) -> tuple[Tensor, dict, dict]:
    """Σ cᵢ·vᵢ over (coefficient, vector) `parts`: the tensor (in the first vector's dtype), the recipe
    (components merged by identity; a composed vector contributes its own components) and the
    settings (layer, n_shots, n_contexts, seed) that all components share, defaults where they differ."""
    if not parts:
        raise TvLensError("nothing to combine: give at least one vector")
    coefficients = [check_coefficient(c) for c, _ in parts]
    vectors = [v for _, v in parts]
    check_combinable(vectors)
    total = sum(c * v.vectors.float() for c, v in zip(coefficients, vectors))
    if not total.isfinite().all():
        raise TvLensError("the combination overflows (infinite values): use smaller coefficients")
    merged: dict[str, dict] = {}
    for c, v in zip(coefficients, vectors):
        for term in terms_of(v):
            if term["digest"] in merged:
                merged[term["digest"]]["coefficient"] += c * term["coefficient"]
            else:
                merged[term["digest"]] = {**term, "coefficient": c * term["coefficient"]}
    terms = [t for t in merged.values() if t["coefficient"] != 0]

    def common(name: str, default):
        """The terms' value of setting `name` where they all agree, else `default`."""
        values = {repr(t[name]) for t in terms}
        return terms[0][name] if len(values) == 1 else default

    settings = {"layer": common("layer", None), "n_shots": common("n_shots", 0),
                "n_contexts": common("n_contexts", 1), "seed": common("seed", None)}
    return total.to(vectors[0].vectors.dtype), {"expression": expression(terms), "terms": terms}, settings


def recipe_problem(value, n_layers: int) -> str | None:
    """Why `value` is not a recipe (null, or an expression and terms as `linear_combination` writes
    them) of a vector of `n_layers` layers, or None."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"expression", "terms"} or not isinstance(value["expression"], str):
        return "is not an object of an expression and its terms"
    terms = value["terms"]
    if not isinstance(terms, list) or not all(isinstance(t, dict) and set(t) == set(TERM_FIELDS) for t in terms):
        return f"does not list terms with the fields {', '.join(TERM_FIELDS)}"
    for term in terms:
        number = term["coefficient"]
        if not (isinstance(term["name"], str) and isinstance(term["digest"], str)
                and isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number)
                and (term["layer"] is None or _int(term["layer"]) and 0 <= term["layer"] < n_layers)
                and _int(term["n_shots"]) and _int(term["n_contexts"])
                and (term["seed"] is None or _int(term["seed"]))
                and (term["task"] is None or isinstance(term["task"], str)) and isinstance(term["heads"], list)):
            return f"has a malformed term {term.get('name')!r}"
    return None


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
