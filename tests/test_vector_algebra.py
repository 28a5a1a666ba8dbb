"""Vector algebra: sums, differences, multiples and means of vectors of one model, kind and shape, their
recipes, their files, and one-line refusals of anything else."""

from dataclasses import replace

import pytest
import torch

from tv_lens.task_vectors.applying import apply
from tv_lens.task_vectors.learning import learn
from tv_lens.task_vectors.vector import FUNCTION_VECTOR, SCHEMA_VERSION, FunctionVector, TaskVector, VectorFileError


def vector(model, demos, task, seed=0, layer=1):
    return learn(model, demos, dummies=["gh", "ij"], layer=layer, task=task, seed=seed)


@pytest.fixture(scope="module")
def three(tiny_llama):
    return (vector(tiny_llama, [("ab", "c"), ("de", "f")], "last"),
            vector(tiny_llama, [("ab", "A"), ("de", "D")], "first_upper"),
            vector(tiny_llama, [("ab", "a"), ("de", "d")], "first"))


def as_fv(theta):
    return FunctionVector(vectors=theta.vectors, **{**theta.metadata(), "kind": FUNCTION_VECTOR})


def test_sum_difference_multiple_and_mean_compute_row_by_row(three):
    a, b, c = three
    composed = a + b - c
    assert torch.allclose(composed.vectors, a.vectors + b.vectors - c.vectors)
    assert torch.allclose((2 * a).vectors, 2 * a.vectors) and torch.allclose((a * 0.5).vectors, 0.5 * a.vectors)
    assert torch.allclose((-a).vectors, -a.vectors)
    assert torch.allclose(TaskVector.mean([a, b, c]).vectors, torch.stack([a.vectors, b.vectors, c.vectors]).mean(0))
    assert composed.vectors.dtype == a.vectors.dtype and composed.kind == a.kind and composed.hook == a.hook
    assert (composed.model, composed.fingerprint, composed.prompt_format) == (a.model, a.fingerprint, a.prompt_format)


def test_a_composed_vector_records_its_recipe_and_its_components(three):
    a, b, c = three
    composed = as_fv(a) + as_fv(b) - as_fv(c)
    assert composed.recipe["expression"] == "fv:last + fv:first_upper - fv:first"
    terms = composed.recipe["terms"]
    assert [t["name"] for t in terms] == ["fv:last", "fv:first_upper", "fv:first"]
    assert [t["coefficient"] for t in terms] == [1.0, 1.0, -1.0]
    assert [t["digest"] for t in terms] == [a.digest(), b.digest(), c.digest()]
    assert all(t["layer"] == 1 and t["n_shots"] == 2 and t["seed"] == 0 for t in terms)
    assert composed.task is None and composed.layer == 1 and composed.dev_accuracy == []
    assert isinstance(composed, FunctionVector) and composed.intervention().mode == "add"
    assert "= fv:last + fv:first_upper - fv:first" in composed.summary()
    assert (2 * a).recipe["expression"] == "2 * tv:last"
    assert (a - 0.5 * b).recipe["expression"] == "tv:last - 0.5 * tv:first_upper"
    assert (-a + b).recipe["expression"] == "-tv:last + tv:first_upper"
    assert TaskVector.mean([a, b]).recipe["expression"] == "mean(tv:last, tv:first_upper)"


def test_composing_composed_vectors_merges_components_by_identity(three):
    a, b, c = three
    nested = (a + b) - (c + b)
    assert nested.recipe["expression"] == "tv:last - tv:first"
    assert torch.allclose(nested.vectors, a.vectors - c.vectors, atol=1e-6)
    assert (a - a).recipe == {"expression": "0", "terms": []}
    other_seed = replace(a, vectors=a.vectors + 1, seed=3)
    mixed = a + other_seed
    assert mixed.recipe["expression"] == "tv:last + tv:last" and mixed.seed is None  # two vectors of one task
    assert len({t["digest"] for t in mixed.recipe["terms"]}) == 2


def test_settings_are_kept_where_all_components_agree(tiny_llama, three):
    a, b, _ = three
    elsewhere = vector(tiny_llama, [("ab", "c")], "one", seed=5, layer=2)
    mixed = a + elsewhere
    assert mixed.layer is None and mixed.seed is None and mixed.n_shots == 0
    with pytest.raises(ValueError, match="no default layer: pass layer=L"):
        apply(tiny_llama, mixed, ["kl"])
    assert apply(tiny_llama, mixed, ["kl"], layer=1) == apply(tiny_llama, mixed, ["kl"], layer=1)
    assert (a + b).layer == 1 and (a + b).n_shots == 2


def test_a_composed_vector_applies_as_its_sum(tiny_llama, three):
    a, b, c = three
    composed = a + b - c
    by_hand = replace(a, vectors=a.vectors + b.vectors - c.vectors)
    queries = ["kl", "m", "nop"]
    assert apply(tiny_llama, composed, queries) == apply(tiny_llama, by_hand, queries)
    assert apply(tiny_llama, composed, queries, mode="add", strength=2.0) == \
        apply(tiny_llama, by_hand, queries, mode="add", strength=2.0)


def test_save_and_load_round_trip_keeps_the_recipe(tmp_path, three):
    a, b, c = three
    composed = as_fv(a) + as_fv(b) - as_fv(c)
    back = TaskVector.load(composed.save(tmp_path / "composed.safetensors"))
    assert torch.equal(back.vectors, composed.vectors)
    assert back.metadata() == composed.metadata() and back.recipe == composed.recipe
    assert isinstance(back, FunctionVector)
    assert back.schema_version == SCHEMA_VERSION == 2
    again = back - as_fv(a)
    assert again.recipe["expression"] == "fv:first_upper - fv:first"


def test_a_version_1_file_without_a_recipe_still_loads(tmp_path, three):
    old = replace(three[0], schema_version=1)
    back = TaskVector.load(old.save(tmp_path / "old.safetensors"))
    assert back.recipe is None and back.schema_version == 1


def test_an_altered_recipe_is_refused(tmp_path, three):
    a, b, _ = three
    composed = a + b
    for bad in ({"expression": "x"}, {"expression": 3, "terms": []},
                {"expression": "x", "terms": [{"name": "x"}]},
                {"expression": "x", "terms": [{**composed.recipe["terms"][0], "layer": 99}]},
                {"expression": "x", "terms": [{**composed.recipe["terms"][0], "coefficient": "1"}]}):
        path = replace(composed, recipe=bad).save(tmp_path / "bad.safetensors")
        with pytest.raises(VectorFileError, match="metadata field 'recipe'") as info:
            TaskVector.load(path)
        assert "\n" not in str(info.value)


def test_vectors_of_other_models_kinds_shapes_or_formats_are_refused(tiny_llama, tiny_gemma, three):
    a, b, _ = three
    cases = {
        "different kinds": as_fv(b),
        "different models": vector(tiny_gemma, [("ab", "c")], "gemma"),
        "shapes differ": replace(b, vectors=torch.zeros(2, b.d_model)),
        "different hooks": replace(b, hook="blocks.{layer}.hook_resid_pre"),
        "different prompt formats": replace(b, prompt_format={**b.prompt_format, "leading_space": True}),
    }
    for why, other in cases.items():
        for combine in (lambda: a + other, lambda: a - other, lambda: TaskVector.mean([a, other])):
            with pytest.raises(ValueError, match=why) as info:
                combine()
            message = str(info.value)
            assert "\n" not in message and message.startswith("cannot combine tv:last and ")


def test_only_finite_numbers_multiply_and_only_vectors_add(three):
    a = three[0]
    for bad, error in ((float("nan"), ValueError), (float("inf"), ValueError), (True, TypeError), ("2", TypeError)):
        with pytest.raises(error):
            a * bad
    with pytest.raises(TypeError):
        a + 1
    with pytest.raises(TypeError):
        a * a
    with pytest.raises(TypeError, match="non-empty list of TaskVectors"):
        TaskVector.mean([])
    with pytest.raises(ValueError, match="overflows"):
        replace(a, vectors=torch.full_like(a.vectors, 3e38)) * 10
