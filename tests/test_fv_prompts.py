"""The function-vector protocol's items: splits, demonstrations from train, shuffled labels."""

import random

import pytest

from tv_lens.function_vectors.items import fv_items, split_inputs
from tv_lens.tasks import Item, get_task, shuffle_labels
from tv_lens.tasks.prompts import QA_FORMAT


@pytest.fixture(scope="module")
def task():
    return get_task("antonyms")


def test_the_qa_format_is_the_fv_papers():
    item = Item("big", ("small",), (("hot", "cold"), ("up", "down")), ())
    assert QA_FORMAT.icl_prompt(item) == "Q: hot\nA: cold\n\nQ: up\nA: down\n\nQ: big\nA:"
    assert QA_FORMAT.zero_shot_prompt(item) == "Q: big\nA:"


def test_split_is_70_30_disjoint_and_seeded(task):
    train, test = split_inputs(task, seed=3)
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(task.inputs)
    assert len(train) == round(0.7 * len(task))
    assert split_inputs(task, seed=3) == (train, test) and split_inputs(task, seed=4) != (train, test)


def test_demonstrations_come_from_train_and_never_hold_the_query(task):
    items = fv_items(task, seed=0, n_clean=20, n_corrupted=5, n_dev=10, n_test=10)
    train = set(items.train)
    for item in items.clean + items.corrupted + items.dev + items.test + items.test_shuffled:
        assert len(item.demos) == 10
        assert all(x in train and x != item.query for x, _ in item.demos)
    assert {i.query for i in items.test} <= set(items.test_inputs)
    assert {i.query for i in items.clean + items.corrupted + items.dev} <= train
    assert len({i.query for i in items.test}) == len(items.test) == 10
    assert all(item.answers == task.answers(item.query) for item in items.test)


def test_shuffling_permutes_labels_and_keeps_inputs(task):
    item = fv_items(task, seed=0, n_clean=1, n_corrupted=1, n_dev=1, n_test=1).test[0]
    shuffled = shuffle_labels(item, random.Random(0))
    assert [x for x, _ in shuffled.demos] == [x for x, _ in item.demos]
    assert sorted(y for _, y in shuffled.demos) == sorted(y for _, y in item.demos)
    assert shuffled.demos != item.demos and shuffled.query == item.query


def test_small_tasks_are_refused_with_a_clear_message(task):
    tiny = task.with_pairs({"a": "b", "c": "d"})
    with pytest.raises(ValueError, match="too few"):
        fv_items(tiny)
    with pytest.raises(ValueError, match="10 demonstrations and 0 dummy queries are needed"):
        fv_items(task.with_pairs({str(i): "x" for i in range(8)}))


def test_the_filter_variant_can_be_forced():
    from tv_lens.models.tiny import char_tokenizer

    letters = get_task("antonyms").with_pairs({"a": "b", "c": "d", "e": "f"}, category="linguistic")
    chosen = letters.filtered(char_tokenizer())
    assert not chosen.leading_space and len(chosen) == 3  # one character: one token without a space
    assert not letters.filtered(char_tokenizer(), leading_space=False).leading_space
    with pytest.raises(ValueError, match="single token"):
        letters.filtered(char_tokenizer(), leading_space=True)  # ' b' is two tokens
    assert get_task("country_capital").filtered(char_tokenizer(), leading_space=True).leading_space  # unfiltered
