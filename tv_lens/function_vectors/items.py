"""The function-vector protocol's items (Todd et al. 2024, FV.md): the task as a prompt format reads
it, the train/test/validation split, the queries the model answers correctly in context, and the
clean, shuffled-label, dev and test items built on them.

Reading: every pair is kept and the first token of its answer is scored (the token that follows the
query in the format). Left out are only pairs whose first answer token is not defined (the answer
merges into the query when tokenized) or is whitespace alone (a bare space would make every answer
that starts with one right). `single_token_filter=True` keeps single-token answers only instead.

Split: the inputs (sorted, shuffled with the seed) are cut 70/30 into train and the rest, and the
rest 70/30 into test and validation (about 21% and 9% of the inputs). Demonstrations always come
from train and never hold the item's own query.

Queries (`queries="icl_correct"`, the paper's): validation and test queries are screened in seeded
order, each with one clean prompt, and kept when the greedy first token is the first token of one of
its answers, up to `n_dev` and `n_test` kept. Clean items (ā) and shuffled-label items (AIE) query
the kept validation queries (recurring when there are fewer than needed), with fresh
demonstrations; the dev items (layer choice) are the kept validation items, the test items the kept
test items, and their shuffled-label copies permute the same demonstrations' labels. With
`queries="all"`, `n_dev` and `n_test` queries are drawn from validation and test without screening.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from tv_lens.errors import TvLensError
from tv_lens.models.bridge import Model
from tv_lens.patching.engine import Budget, Run, encode, predict, token_limit
from tv_lens.patching.guard import check_model
from tv_lens.settings import FV_CLEAN, FV_CORRUPTED, FV_PAPER
from tv_lens.stats import Accuracy
from tv_lens.tasks import Item, Task, draw_queries, items_for, shuffle_labels
from tv_lens.tasks.prompts import QA_FORMAT, PromptFormat, prompt_ready

TRAIN_FRACTION, TEST_FRACTION = 0.7, 0.7
FORMATS = ("qa", "arrow")
QUERY_SETS = ("icl_correct", "all")
MIN_SCREENED = 8
"""The fewest queries screened in one batch."""


class UnusableTask(TvLensError):
    """A task that cannot take part in the function-vector protocol with this model and prompt format:
    no answer has a first token of its own, or no validation query is answered correctly in context."""


def first_answer_tokens(tokenizer, fmt: PromptFormat, pairs: Sequence[tuple[str, str]]) -> list[int | None]:
    """For each (x, y), the first token of y as it follows the query `fmt.query(x)`; None where y
    merges into the query when tokenized (its first token is not defined) or adds no token."""
    queries = [fmt.query(x) for x, _ in pairs]
    ids = tokenizer(queries + [fmt.demo(x, y) for x, y in pairs], add_special_tokens=False)["input_ids"]
    prompts, fulls = ids[:len(pairs)], ids[len(pairs):]
    return [full[len(prompt)] if full[:len(prompt)] == prompt and len(full) > len(prompt) else None
            for prompt, full in zip(prompts, fulls)]


def _is_blank(tokenizer, token: int | None) -> bool:
    return token is None or not tokenizer.decode([token]).strip()


def readable_pairs(tokenizer, fmt: PromptFormat, task: Task) -> dict[str, tuple[str, ...]]:
    """The pairs of `task` whose canonical answer has a first token in `fmt` that is not whitespace alone."""
    inputs = task.inputs
    firsts = first_answer_tokens(tokenizer, fmt, [(x, task.canonical(x)) for x in inputs])
    return {x: task.answers(x) for x, token in zip(inputs, firsts) if not _is_blank(tokenizer, token)}


def task_in_format(model: Model, task: Task, fmt: str | PromptFormat = "qa", *, n_shots: int = FV_PAPER.n_shots,
                   single_token_filter: bool = False) -> tuple[Task, PromptFormat]:
    """The task as the model reads it in a prompt format, and that format: "qa" (the FV paper's
    `Q: {x}\nA: {y}`, answers after a space), "arrow" (the task-vector paper's, in the variant the
    paper's rule chooses) or a `PromptFormat`. Every pair whose first answer token is defined and not
    whitespace alone is kept (the FV paper scores the first token of every answer);
    `single_token_filter=True` keeps single-token answers only. A text the format cannot hold is
    refused, pairs too long for `n_shots`-shot prompts skipped (`tv_lens.tasks.prompts.prompt_ready`)."""
    check_model(model)
    if isinstance(fmt, PromptFormat):
        leading_space = fmt.leading_space
    elif fmt == "qa":
        fmt, leading_space = QA_FORMAT, True
    elif fmt == "arrow":
        leading_space = task.filter_report(model.tokenizer, single_token_filter=False).leading_space
        fmt = PromptFormat(leading_space=leading_space)
    else:
        raise TvLensError(f"unknown prompt format {fmt!r}: choose one of {', '.join(FORMATS)} or pass a PromptFormat")
    if single_token_filter:
        kept = task.filtered(model.tokenizer, single_token_filter=True, leading_space=leading_space)
    else:
        pairs = readable_pairs(model.tokenizer, fmt, task)
        if not pairs:
            raise UnusableTask(f"task {task.name!r}: no answer has a first token of its own after the query in this "
                               f"prompt format (each merges into the query or starts with a bare space): use another "
                               f"format")
        kept = task.with_pairs(pairs, leading_space=leading_space, single_token_filter=False)
    return prompt_ready(kept, fmt, model.tokenizer, token_limit(model), n_shots), fmt


def answer_tokens(model: Model, fmt: PromptFormat, items: Sequence[Item]) -> list[tuple[int, ...]]:
    """For each item, the first tokens of its accepted answers after its query (the canonical
    answer's first): a greedy first token among them is correct. TvLensError (one line) where the
    canonical answer has no first token of its own."""
    pairs = [(item.query, answer) for item in items for answer in item.answers]
    firsts = iter(first_answer_tokens(model.tokenizer, fmt, pairs))
    tokens = []
    for item in items:
        mine = [next(firsts) for _ in item.answers]
        if _is_blank(model.tokenizer, mine[0]):
            raise TvLensError(f"the answer {item.answers[0]!r} has no first token of its own after the query "
                              f"{fmt.query(item.query)!r} (it merges into the query or starts with a bare space): "
                              f"read the task with task_in_format or use another prompt format")
        tokens.append(tuple(dict.fromkeys(t for t in mine if t is not None and not _is_blank(model.tokenizer, t))))
    return tokens


def icl_hits(model: Model, fmt: PromptFormat, items: Sequence[Item], budget: Budget | None = None) -> list[bool]:
    """Whether the model's greedy first token on each item's clean prompt is the first token of one
    of its answers (the FV paper's "ICL gets it right": rank 0)."""
    predictions = predict(model, [Run(tokens) for tokens in encode(model, [fmt.icl_prompt(i) for i in items])],
                          budget=budget)
    return [p.token in accepted for p, accepted in zip(predictions, answer_tokens(model, fmt, items))]


@dataclass(frozen=True)
class FVItems:
    """Every item set of one task's function-vector experiment (see the module docstring), and the
    ICL accuracy of the validation and test queries looked at (`icl_valid`, `icl_test`)."""

    queries: str
    train: list[str]
    valid_inputs: list[str]
    test_inputs: list[str]
    icl_valid: Accuracy
    icl_test: Accuracy
    clean: list[Item]
    corrupted: list[Item]
    dev: list[Item]
    test: list[Item]
    dev_shuffled: list[Item]
    test_shuffled: list[Item]

    ITEM_LISTS: ClassVar[tuple[str, ...]] = ("clean", "corrupted", "dev", "test", "dev_shuffled", "test_shuffled")

    def to_dict(self) -> dict:
        """JSON-ready: items as [query, answers, demonstrations]."""
        plain = {name: [[i.query, list(i.answers), [list(d) for d in i.demos]] for i in getattr(self, name)]
                 for name in self.ITEM_LISTS}
        return {"queries": self.queries, "train": self.train, "valid_inputs": self.valid_inputs,
                "test_inputs": self.test_inputs, "icl_valid": self.icl_valid.to_dict(),
                "icl_test": self.icl_test.to_dict(), **plain}

    @classmethod
    def from_dict(cls, data: dict) -> FVItems:
        """The inverse of `to_dict`."""
        lists = {name: [Item(q, tuple(a), tuple((x, y) for x, y in d), ()) for q, a, d in data[name]]
                 for name in cls.ITEM_LISTS}
        accuracies = {name: Accuracy(data[name]["correct"], data[name]["total"]) for name in ("icl_valid", "icl_test")}
        parts: dict[str, Any] = {**accuracies, **lists}
        return cls(queries=data["queries"], train=data["train"], valid_inputs=data["valid_inputs"],
                   test_inputs=data["test_inputs"], **parts)


def split_inputs(task: Task, seed: int, train_fraction: float = TRAIN_FRACTION,
                 test_fraction: float = TEST_FRACTION) -> tuple[list[str], list[str], list[str]]:
    """Train, test and validation inputs: the task's inputs shuffled with `random.Random(seed)`, cut
    into train and the rest, the rest into test and validation (70/30 and 70/30: the paper's)."""
    for name, value in dict(train_fraction=train_fraction, test_fraction=test_fraction).items():
        if not 0 < value < 1:
            raise TvLensError(f"{name} must be between 0 and 1, got {value}")
    shuffled = random.Random(seed).sample(task.inputs, len(task))
    cut = round(len(shuffled) * train_fraction)
    rest = shuffled[cut:]
    cut_test = round(len(rest) * test_fraction)
    return shuffled[:cut], rest[:cut_test], rest[cut_test:]


def _screened(model: Model, task: Task, fmt: PromptFormat, candidates: list[str], wanted: int, rng: random.Random,
              n_shots: int, train: list[str], budget: Budget | None) -> tuple[list[Item], Accuracy]:
    """Clean items on `candidates` in order, screened in batches until `wanted` are answered
    correctly or the candidates run out: those items, and ICL's accuracy over all screened."""
    kept: list[Item] = []
    hits = screened = 0
    while len(kept) < wanted and screened < len(candidates):
        rate = max(hits / screened, 0.1) if screened else 1.0
        size = max(math.ceil((wanted - len(kept)) / rate), MIN_SCREENED)
        batch = items_for(task, candidates[screened:screened + size], rng, n_shots, pool=train)
        correct = icl_hits(model, fmt, batch, budget)
        kept += [item for item, ok in zip(batch, correct) if ok]
        hits += sum(correct)
        screened += len(batch)
    return kept[:wanted], Accuracy(hits, screened)


def _drawn(model: Model, task: Task, fmt: PromptFormat, inputs: list[str], n: int, rng: random.Random, n_shots: int,
           train: list[str], budget: Budget | None) -> tuple[list[Item], Accuracy]:
    """Clean items on `n` distinct `inputs` (all of them when fewer), unscreened, and ICL's accuracy on them."""
    items = items_for(task, rng.sample(inputs, min(n, len(inputs))), rng, n_shots, pool=train)
    return items, Accuracy.of(icl_hits(model, fmt, items, budget))


def fv_items(model: Model, task: Task, fmt: PromptFormat, seed: int = 0, *, n_shots: int = FV_PAPER.n_shots,
             n_clean: int = FV_CLEAN, n_corrupted: int = FV_CORRUPTED, n_dev: int = FV_PAPER.n_dev,
             n_test: int = FV_PAPER.n_test, queries: str = "icl_correct", budget: Budget | None = None) -> FVItems:
    """The items of one task read in `fmt` (`task_in_format`): validation queries screened (or drawn,
    `queries="all"`) up to `n_dev`, `n_clean` clean and `n_corrupted` shuffled-label items on them,
    then test queries screened or drawn up to `n_test` (0: none). UnusableTask (one line) when no
    validation query is answered correctly."""
    if queries not in QUERY_SETS:
        raise TvLensError(f"unknown query set {queries!r}: choose one of {', '.join(QUERY_SETS)}")
    for name, value in dict(n_shots=n_shots, n_clean=n_clean, n_corrupted=n_corrupted, n_dev=n_dev).items():
        if value < 1:
            raise TvLensError(f"{name} must be at least 1, got {value}")
    if n_test < 0:
        raise TvLensError(f"n_test must be at least 0, got {n_test}")
    train, test, valid = split_inputs(task, seed)
    if not valid or len(train) < 2:
        raise TvLensError(f"task {task.name!r} has {len(task)} pairs: too few for a train split with test and "
                          f"validation queries (70%, 21%, 9%); add pairs to the task")
    rng = random.Random(seed + 1)
    choose = _screened if queries == "icl_correct" else _drawn
    dev, icl_valid = choose(model, task, fmt, valid, n_dev, rng, n_shots, train, budget)
    if not dev:
        raise UnusableTask(
            f"task {task.name!r}: the model answers none of the {icl_valid.total} validation queries screened "
            f"correctly with clean {n_shots}-shot prompts, so the FV paper's ICL-correct filter leaves no query for "
            f"ā and the AIE: use queries='all' to take every query")
    pool = [item.query for item in dev]
    clean = items_for(task, draw_queries(pool, n_clean, rng), rng, n_shots, pool=train)
    corrupted = [shuffle_labels(item, rng)
                 for item in items_for(task, draw_queries(pool, n_corrupted, rng), rng, n_shots, pool=train)]
    test_items: list[Item] = []
    icl_test = Accuracy(0, 0)
    if n_test:
        test_items, icl_test = choose(model, task, fmt, test, n_test, rng, n_shots, train, budget)
    return FVItems(queries=queries, train=train, valid_inputs=valid, test_inputs=test, icl_valid=icl_valid,
                   icl_test=icl_test, clean=clean, corrupted=corrupted, dev=dev, test=test_items,
                   dev_shuffled=[shuffle_labels(item, rng) for item in dev],
                   test_shuffled=[shuffle_labels(item, rng) for item in test_items])
