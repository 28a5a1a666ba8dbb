"""The paper's prompt format, byte for byte, and seeded sampling of items (deterministic across processes)."""

import json
import os
import random
import subprocess
import sys

import pytest

from tv_lens.tasks import (
    Item,
    Task,
    context_item,
    draw_queries,
    get_task,
    items_for,
    sample_items,
    sample_splits,
)
from tv_lens.tasks.prompts import PromptFormat

FRUIT_COLORS = Task(
    "fruit_colors",
    "custom",
    "fruit to its color",
    {
        "banana": "yellow", "cherry": "red", "grape": "purple", "kiwi": "green", "lemon": "yellow",
        "lime": "green", "plum": "purple", "orange": "orange", "strawberry": "red", "blueberry": "blue",
    },
)


def numbers_task(count, category="custom"):
    return Task(f"numbers_{count}", category, "", {f"n{i}": f"m{i}" for i in range(count)})


# --- PromptFormat ------------------------------------------------------------------------------

def test_default_format_renders_the_paper_prompt_exactly():
    prompt = PromptFormat().render([("go", "going"), ("eat", "eating")], "run")
    assert prompt == "example:go->going\nexample:eat->eating\nexample:run->"


def test_default_prompt_for_a_fixed_seed_is_byte_exact():
    item = sample_splits(get_task("next_letter"), seed=0).test[0]
    assert PromptFormat().icl_prompt(item) == (
        "example:u->v\nexample:m->n\nexample:k->l\nexample:t->u\nexample:h->i\nexample:r->"
    )
    item = sample_items(FRUIT_COLORS, 1, seed=42)[0]
    assert PromptFormat().icl_prompt(item) == (
        "example:banana->yellow\n"
        "example:lemon->yellow\n"
        "example:cherry->red\n"
        "example:orange->orange\n"
        "example:lime->green\n"
        "example:blueberry->"
    )
    assert PromptFormat(leading_space=True).icl_prompt(item) == (
        "example: banana-> yellow\n"
        "example: lemon-> yellow\n"
        "example: cherry-> red\n"
        "example: orange-> orange\n"
        "example: lime-> green\n"
        "example: blueberry->"
    )


def test_leading_space_variant_spaces_input_and_output_but_not_the_query_end():
    fmt = PromptFormat(leading_space=True)
    assert fmt.demo("go", "going") == "example: go-> going"
    assert fmt.query("go") == "example: go->"
    assert PromptFormat().with_leading_space(True) == fmt


def test_zero_shot_and_dummy_prompts():
    item = Item(query="c", answers=("d",), demos=(("a", "b"),), dummies=("x", "y"))
    fmt = PromptFormat()
    assert fmt.zero_shot_prompt(item) == "example:c->"
    assert fmt.dummy_prompts(item) == ["example:a->b\nexample:x->", "example:a->b\nexample:y->"]
    assert fmt.render([], "c") == "example:c->"


def test_custom_templates_and_separator():
    fmt = PromptFormat(example_template="Q: {x}\nA: {y}", query_template="Q: {x}\nA:", separator="\n\n")
    assert fmt.render([("2+2", "4")], "3+3") == "Q: 2+2\nA: 4\n\nQ: 3+3\nA:"


def test_braces_in_values_or_templates_stay_literal():
    fmt = PromptFormat(example_template="{x} => {y} {z}", query_template="{x} =>")
    assert fmt.demo("{y}", "{x}") == "{y} => {x} {z}"


@pytest.mark.parametrize(
    ("example", "query"),
    [("example:{x}->", "example:{x}->"), ("{y}", "{x}"), ("{x}{y}", "{x}{y}"), ("{x}{y}", "->")],
)
def test_templates_must_name_their_fields(example, query):
    with pytest.raises(ValueError, match="template must contain"):
        PromptFormat(example_template=example, query_template=query)


def test_format_for_a_filtered_task_uses_its_variant():
    with pytest.raises(ValueError, match="no prompt variant yet: pass task.filtered"):
        PromptFormat.for_task(FRUIT_COLORS)
    plain = FRUIT_COLORS.with_pairs(FRUIT_COLORS.pairs, leading_space=False)
    assert PromptFormat.for_task(plain) == PromptFormat()
    spaced = FRUIT_COLORS.with_pairs(FRUIT_COLORS.pairs, leading_space=True)
    assert PromptFormat.for_task(spaced, separator="\n\n") == PromptFormat(separator="\n\n", leading_space=True)


# --- sampling ----------------------------------------------------------------------------------

def check_item(task, item, n_shots=5, n_dummies=2):
    assert item.answers == task.answers(item.query)
    assert len(item.demos) == n_shots and len(item.dummies) == n_dummies
    demo_inputs = [x for x, _ in item.demos]
    assert item.query not in demo_inputs
    assert len(set(demo_inputs)) == n_shots
    assert all(y == task.canonical(x) for x, y in item.demos)
    assert item.query not in item.dummies
    assert len(set(item.dummies)) == n_dummies
    assert not set(item.dummies) & set(demo_inputs)


@pytest.mark.parametrize("name", ["next_letter", "list_first", "antonyms", "country_capital"])
def test_splits_follow_the_protocol(name):
    task = get_task(name)
    splits = sample_splits(task, seed=3)
    assert (len(splits.test), len(splits.dev), len(splits.baseline)) == (50, 50, 100)
    for item in splits.test + splits.dev:
        check_item(task, item)
    assert not {i.query for i in splits.test} & {i.query for i in splits.dev}
    assert all(item.demos == () and item.dummies == () for item in splits.baseline)
    assert all(item.answers == task.answers(item.query) for item in splits.baseline)


def test_large_tasks_get_distinct_queries_in_each_split():
    splits = sample_splits(get_task("antonyms"), seed=0)
    for items in (splits.test, splits.dev, splits.baseline):
        assert len({item.query for item in items}) == len(items)


def test_small_algorithmic_tasks_recur_queries_evenly_with_fresh_demos():
    task = get_task("next_letter")
    splits = sample_splits(task, seed=0)
    test_queries = [item.query for item in splits.test]
    counts = [test_queries.count(q) for q in set(test_queries)]
    assert max(counts) - min(counts) <= 1
    repeated = [item for item in splits.test if item.query == test_queries[0]]
    assert len({item.demos for item in repeated}) == len(repeated)
    assert len(set(test_queries) | {item.query for item in splits.dev}) == len(task)


def test_sampling_is_deterministic_in_process_and_depends_on_the_seed():
    task = get_task("present_past")
    assert sample_splits(task, seed=5) == sample_splits(task, seed=5)
    assert sample_splits(task, seed=5) != sample_splits(task, seed=6)
    assert sample_items(task, 20, seed=1) == sample_items(task, 20, seed=1)


def splits_signature(seed):
    return {
        name: [[item.query, list(item.demos), list(item.dummies)]
               for items in sample_splits(get_task(name), seed=seed).__dict__.values() for item in items]
        for name in ("list_first", "to_upper", "fr_en", "person_religion")
    }


def test_sampling_is_identical_across_processes_with_different_hash_seeds():
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "from test_prompts import splits_signature; print(json.dumps(splits_signature(11)))"
    )
    expected = json.loads(json.dumps(splits_signature(11)))
    for hash_seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", script, os.path.dirname(__file__)],
            env=env, capture_output=True, text=True, check=True,
        )
        assert json.loads(result.stdout) == expected


def test_sample_items_excludes_queries_but_not_demonstrations():
    task = numbers_task(12)
    excluded = [f"n{i}" for i in range(6)]
    items = sample_items(task, 6, seed=0, exclude=excluded)
    assert {item.query for item in items} == {f"n{i}" for i in range(6, 12)}
    for item in items:
        check_item(task, item)


def test_sample_items_custom_shot_and_dummy_counts():
    task = get_task("antonyms")
    for item in sample_items(task, 10, seed=2, n_shots=4, n_dummies=1):
        check_item(task, item, n_shots=4, n_dummies=1)
    for item in sample_items(task, 3, seed=2, n_shots=0, n_dummies=0):
        check_item(task, item, n_shots=0, n_dummies=0)


def test_too_few_pairs_for_one_item_is_a_one_line_error():
    with pytest.raises(ValueError) as error:
        sample_items(numbers_task(7), 1, seed=0)
    message = str(error.value)
    assert "\n" not in message
    assert "has 7 pairs" in message and "needs 8 distinct inputs" in message and "lower n_shots or n_dummies" in message
    assert len(sample_items(numbers_task(7), 1, seed=0, n_dummies=1)) == 1


def test_too_few_pairs_for_distinct_test_and_dev_queries():
    task = numbers_task(60)
    with pytest.raises(ValueError) as error:
        sample_splits(task, seed=0, allow_repeats=False)
    message = str(error.value)
    assert "\n" not in message
    assert "has 60 pairs" in message and "100 distinct queries" in message
    assert "lower n_test/n_dev" in message and "allow_repeats=True" in message
    splits = sample_splits(task, seed=0, n_test=30, n_dev=30, n_baseline=60, allow_repeats=False)
    assert len(splits.test) == 30 and len(splits.dev) == 30


def test_too_few_pairs_for_baseline_and_for_sample_items():
    with pytest.raises(ValueError, match="100 distinct baseline queries are needed: lower n_baseline"):
        sample_splits(numbers_task(80), seed=0, n_test=40, n_dev=40, allow_repeats=False)
    with pytest.raises(ValueError, match="10 pairs available as queries, but 11 distinct queries are needed: lower n"):
        sample_items(numbers_task(10), 11, seed=0, allow_repeats=False)


def test_small_tasks_of_any_category_recur_queries_as_the_letter_tasks_do():
    task = numbers_task(20)
    splits = sample_splits(task, seed=0)
    assert (len(splits.test), len(splits.dev), len(splits.baseline)) == (50, 50, 100)
    assert not {i.query for i in splits.test} & {i.query for i in splits.dev}
    letters = get_task("to_upper")
    assert sample_splits(letters.with_pairs(letters.pairs, category="custom"), seed=3) == sample_splits(letters, seed=3)


def test_repeats_can_be_forbidden():
    with pytest.raises(ValueError, match="distinct queries"):
        sample_splits(get_task("to_upper"), seed=0, allow_repeats=False)


def test_negative_counts_are_rejected():
    with pytest.raises(ValueError, match="n_test must be >= 0"):
        sample_splits(get_task("antonyms"), n_test=-1)


def test_drawn_queries_recur_only_once_every_one_has_been_used():
    pool = [f"n{i}" for i in range(7)]
    queries = draw_queries(pool, 17, random.Random(0))
    assert len(queries) == 17 and sorted(queries[:7]) == sorted(queries[7:14]) == pool
    assert len(set(queries[14:])) == 3
    with pytest.raises(ValueError, match="too few"):
        draw_queries(pool, 8, random.Random(0), shortage="too few")
    with pytest.raises(ValueError, match="no input to draw them from"):
        draw_queries([], 1, random.Random(0))


def test_items_draw_their_demonstrations_and_dummies_from_the_pool_less_the_query():
    task = numbers_task(30)
    pool = task.inputs[:6]
    for item in items_for(task, ["n0", "n29", "n0"], random.Random(1), n_shots=3, n_dummies=2, pool=pool):
        check_item(task, item, n_shots=3, n_dummies=2)
        assert {x for x, _ in item.demos} | set(item.dummies) <= set(pool) - {item.query}
    with pytest.raises(ValueError, match="has 5 inputs to draw from besides the query, but 4 demonstrations and 2"):
        items_for(task, ["n0"], random.Random(1), n_shots=4, n_dummies=2, pool=pool)


def test_a_context_item_only_teaches_theta():
    context = context_item([("a", "b"), ("c", "d")], ["e", "f"])
    assert context.demos == (("a", "b"), ("c", "d")) and context.dummies == ("e", "f") and context.answers == ()
