"""The function-vector protocol's items (FV.md): every pair read, the first answer token scored, the
70/21/9 split, demonstrations from train, the ICL-correct filter, shuffled labels."""

import itertools
import random
import string

import pytest
import torch

from tv_lens.function_vectors.items import (
    UnusableTask,
    answer_tokens,
    fv_items,
    icl_hits,
    split_inputs,
    task_in_format,
)
from tv_lens.patching.engine import encode
from tv_lens.tasks import Item, Task, get_task, shuffle_labels
from tv_lens.tasks.prompts import QA_FORMAT

pytestmark = pytest.mark.usefixtures("one_thread")
PAIRS = [a + b for a, b in itertools.product(string.ascii_lowercase[:10], repeat=2)]


@pytest.fixture(scope="module")
def task():
    return get_task("antonyms")


def greedy(model, prompt: str) -> int:
    with torch.no_grad():
        return int(model(torch.tensor([encode(model, [prompt])[0]]))[0, -1].argmax())


def test_the_qa_format_is_the_fv_papers():
    item = Item("big", ("small",), (("hot", "cold"), ("up", "down")), ())
    assert QA_FORMAT.icl_prompt(item) == "Q: hot\nA: cold\n\nQ: up\nA: down\n\nQ: big\nA:"
    assert QA_FORMAT.zero_shot_prompt(item) == "Q: big\nA:"


def test_split_is_70_21_9_disjoint_and_seeded(task):
    train, test, valid = split_inputs(task, seed=3)
    assert set(train) | set(test) | set(valid) == set(task.inputs)
    assert len(train) + len(test) + len(valid) == len(task)
    assert len(train) == round(0.7 * len(task)) and len(test) == round(0.7 * (len(task) - len(train)))
    assert split_inputs(task, seed=3) == (train, test, valid) and split_inputs(task, seed=4) != (train, test, valid)


def test_every_pair_is_kept_and_the_single_token_filter_is_an_option(tiny_llama):
    mixed = Task("mixed", "linguistic", "one- and three-character answers",
                 {x: (x[0] if i % 2 else x + "z") for i, x in enumerate(PAIRS)})
    kept, fmt = task_in_format(tiny_llama, mixed, "arrow")
    assert len(kept) == len(mixed) and not kept.single_token_filter  # the character tokenizer: 'abz' is 3 tokens
    single, _ = task_in_format(tiny_llama, mixed, "arrow", single_token_filter=True)
    assert set(single.pairs) == {x for i, x in enumerate(PAIRS) if i % 2}


def test_the_first_answer_token_is_scored(tiny_llama):
    kept, fmt = task_in_format(tiny_llama, Task("long", "linguistic", "", {x: x + "yz" for x in PAIRS}), "arrow")
    item = Item("ab", ("abyz", "qq"), tuple((x, x + "yz") for x in PAIRS[2:7]), ())
    (accepted,) = answer_tokens(tiny_llama, fmt, [item])
    assert accepted == tuple(tiny_llama.tokenizer.convert_tokens_to_ids(["a", "q"]))
    items = [Item(x, (x + "yz",), tuple((d, d + "yz") for d in PAIRS[20:25]), ()) for x in PAIRS[:12]]
    predicted = [greedy(tiny_llama, fmt.icl_prompt(i)) for i in items]
    expected = [p == tiny_llama.tokenizer.convert_tokens_to_ids(i.query[0]) for p, i in zip(predicted, items)]
    assert icl_hits(tiny_llama, fmt, items) == expected


def test_answers_whose_first_token_is_a_bare_space_are_refused(tiny_llama):
    with pytest.raises(UnusableTask, match="no answer has a first token of its own") as info:
        task_in_format(tiny_llama, get_task("to_upper"), "qa")  # ' A' is ' ' then 'A' for the character tokenizer
    assert "\n" not in str(info.value)


def test_demonstrations_come_from_train_and_never_hold_the_query(tiny_llama, task):
    kept, fmt = task_in_format(tiny_llama, task, "arrow")
    items = fv_items(tiny_llama, kept, fmt, 0, n_clean=20, n_corrupted=5, n_dev=10, n_test=10, queries="all")
    train = set(items.train)
    for item in items.clean + items.corrupted + items.dev + items.test + items.test_shuffled:
        assert len(item.demos) == 10
        assert all(x in train and x != item.query for x, _ in item.demos)
    assert {i.query for i in items.test} <= set(items.test_inputs)
    assert {i.query for i in items.clean + items.corrupted + items.dev} <= set(items.valid_inputs)
    assert len({i.query for i in items.test}) == len(items.test) == 10
    assert all(item.answers == kept.answers(item.query) for item in items.test)


def test_the_icl_correct_filter_keeps_the_queries_icl_answers_right(tiny_llama, favourite):
    kept, fmt = task_in_format(tiny_llama, favourite(), "arrow")
    sizes = dict(n_clean=8, n_corrupted=4, n_dev=3, n_test=6)
    items = fv_items(tiny_llama, kept, fmt, 0, **sizes)
    first = {x: tiny_llama.tokenizer.convert_tokens_to_ids(kept.canonical(x)) for x in kept.inputs}
    assert items.dev and items.test
    for item in items.dev + items.test:  # each kept query's own clean prompt, run on its own
        assert greedy(tiny_llama, fmt.icl_prompt(item)) == first[item.query]
    assert {i.query for i in items.clean + items.corrupted} <= {i.query for i in items.dev}
    assert items.icl_valid.correct >= len(items.dev) and items.icl_test.correct >= len(items.test)
    assert len(items.test) == 6 or items.icl_test.total == len(items.test_inputs)  # enough found, or all screened
    unfiltered = fv_items(tiny_llama, kept, fmt, 0, queries="all", **{**sizes, "n_test": 20})
    wrong = [i for i in unfiltered.test if greedy(tiny_llama, fmt.icl_prompt(i)) != first[i.query]]
    assert wrong and unfiltered.icl_test.total == 20  # the filter is not vacuous on this task
    assert unfiltered.icl_test.correct == 20 - len(wrong)


def test_a_task_icl_never_gets_right_is_unusable_in_one_line(tiny_llama, favourite):
    never = favourite("never").with_pairs({x: "Q" for x in PAIRS})
    kept, fmt = task_in_format(tiny_llama, never, "arrow")
    with pytest.raises(UnusableTask, match="answers none of the 9 validation queries") as info:
        fv_items(tiny_llama, kept, fmt, 0, n_clean=4, n_corrupted=2, n_dev=3, n_test=0)
    assert "\n" not in str(info.value) and "queries='all'" in str(info.value)


def test_items_round_trip_through_json(tiny_llama, favourite):
    kept, fmt = task_in_format(tiny_llama, favourite(), "arrow")
    items = fv_items(tiny_llama, kept, fmt, 0, n_clean=4, n_corrupted=2, n_dev=3, n_test=3)
    assert type(items).from_dict(items.to_dict()) == items


def test_shuffling_permutes_labels_and_keeps_inputs(task):
    item = Item("big", ("small",), tuple((x, task.canonical(x)) for x in task.inputs[:10]), ())
    shuffled = shuffle_labels(item, random.Random(0))
    assert [x for x, _ in shuffled.demos] == [x for x, _ in item.demos]
    assert sorted(y for _, y in shuffled.demos) == sorted(y for _, y in item.demos)
    assert shuffled.demos != item.demos and shuffled.query == item.query


def test_small_tasks_and_bad_sizes_are_refused_with_a_clear_message(tiny_llama, task):
    kept, fmt = task_in_format(tiny_llama, task.with_pairs({"a": "b", "c": "d"}), "arrow")
    with pytest.raises(ValueError, match="too few"):
        fv_items(tiny_llama, kept, fmt)
    with pytest.raises(ValueError, match="unknown query set"):
        fv_items(tiny_llama, kept, fmt, queries="some")
    with pytest.raises(ValueError, match="n_clean must be at least 1"):
        fv_items(tiny_llama, kept, fmt, n_clean=0)


def test_the_filter_variant_can_be_forced():
    from tv_lens.models.tiny import char_tokenizer

    letters = get_task("antonyms").with_pairs({"a": "b", "c": "d", "e": "f"}, category="linguistic")
    chosen = letters.filtered(char_tokenizer())
    assert not chosen.leading_space and len(chosen) == 3  # one character: one token without a space
    assert not letters.filtered(char_tokenizer(), leading_space=False).leading_space
    with pytest.raises(ValueError, match="single token"):
        letters.filtered(char_tokenizer(), leading_space=True)  # ' b' is two tokens
    assert get_task("country_capital").filtered(char_tokenizer(), leading_space=True).leading_space  # unfiltered
