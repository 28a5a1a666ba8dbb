"""Learn / Apply / evaluate: padding-correct, exact identities, KV reuse, reproducibility, errors."""

import pytest
import torch

from tv_lens.patching.engine import Budget, Run, encode, predict
from tv_lens.patching.interventions import Intervention
from tv_lens.stats import Accuracy
from tv_lens.task_vectors.applying import apply, next_tokens
from tv_lens.task_vectors.evaluation import evaluate
from tv_lens.task_vectors.learning import learn, learn_items
from tv_lens.tasks import Item, Task
from tv_lens.tasks.prompts import PromptFormat

FMT = PromptFormat()
ONE_BY_ONE = Budget(tokens=1, rows=1)


def shift_task(n: int = 60) -> Task:
    """A custom task with single-character outputs, so the character-level tiny models can run it."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    pairs = {}
    for i in range(n):
        x = letters[i % 26] + letters[(i * 7) % 26] + str(i)
        pairs[x] = letters[(i + 3) % 26]
    return Task(name="shift", category="custom", description="toy", pairs=pairs)


def items(k: int = 4) -> list[Item]:
    """Items with prompts of different lengths (demonstration and query lengths vary)."""
    return [
        Item(query="q" * (i + 1), answers=("z",),
             demos=tuple((("ab" * (i + j + 1))[: i + j + 1], "c") for j in range(2 + i % 3)),
             dummies=("x" * (i + 2), "yy"))
        for i in range(k)
    ]


def max_rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def check_batched_equals_unbatched(model):
    prompts = ["example:hot->", "example:a->b\nexample:fast->", "example:up->down\nexample:x->y\nexample:big->"]
    runs = [Run(t) for t in encode(model, prompts)]
    layers = range(model.cfg.n_layers)
    batched = predict(model, runs, capture=layers, logits=True)
    single = predict(model, runs, capture=layers, logits=True, budget=ONE_BY_ONE)
    for b, s, r in zip(batched, single, runs):
        assert b.token == s.token
        assert max_rel(b.logits, s.logits) < 1e-4
        assert max_rel(b.stack(), s.stack()) < 1e-4
        direct = model(torch.tensor([r.tokens], device=model.cfg.device))[0, -1].cpu()
        assert max_rel(s.logits, direct) < 1e-4
    thetas_b, icl_b = learn_items(model, items(), FMT, icl=True)
    thetas_s, icl_s = learn_items(model, items(), FMT, icl=True, budget=ONE_BY_ONE)
    assert icl_b == icl_s
    for tb, ts in zip(thetas_b, thetas_s):
        assert max_rel(tb, ts) < 1e-4


def test_batched_equals_unbatched_tiny(tiny):
    check_batched_equals_unbatched(tiny)


@pytest.mark.slow
def test_batched_equals_unbatched_embedded(gemma):
    check_batched_equals_unbatched(gemma)


def check_identity(model):
    prompt = FMT.render([("hot", "cold"), ("big", "small")], "fast")
    tokens = encode(model, [prompt])[0]
    (plain,) = predict(model, [Run(tokens)], capture=range(model.cfg.n_layers), logits=True)
    patched = predict(model, [[Run(tokens, (Intervention(layer, plain.stack()[layer]),))
                                  for layer in range(model.cfg.n_layers)]], logits=True)[0]
    for out in patched:
        assert max_rel(out.logits, plain.logits) < 1e-5


def test_patching_theta_into_its_own_prompt_changes_nothing_at_every_layer(tiny):
    check_identity(tiny)


@pytest.mark.slow
def test_identity_embedded(gemma):
    check_identity(gemma)


def test_final_layer_patch_reproduces_icl_logits(tiny):
    last = tiny.cfg.n_layers - 1
    icl_prompt = FMT.render([("ab", "c"), ("de", "f")], "gh")
    (icl,) = predict(tiny, [Run(encode(tiny, [icl_prompt])[0])], capture=[last], logits=True)
    query = encode(tiny, [FMT.query("gh")])[0]
    (patched,) = predict(tiny, [Run(query, (Intervention(last, icl.stack()[0]),))], logits=True)
    assert max_rel(patched.logits, icl.logits) < 1e-5


def test_kv_reuse_gives_the_same_thetas_and_predictions_as_full_prompts(tiny):
    thetas_reuse, icl_reuse = learn_items(tiny, items(), FMT, icl=True, reuse_prefix=True)
    thetas_full, icl_full = learn_items(tiny, items(), FMT, icl=True, reuse_prefix=False)
    assert icl_reuse == icl_full
    for a, b in zip(thetas_reuse, thetas_full):
        assert max_rel(a, b) < 1e-5


def test_layer_sweep_reuse_equals_one_run_per_layer(tiny):
    from tv_lens.task_vectors.sweep import layer_sweep

    thetas, _ = learn_items(tiny, items(), FMT)
    prompts = [FMT.query(i.query) for i in items()]
    _, swept = layer_sweep(tiny, prompts, thetas, lambda i, p: True)
    for layer in range(tiny.cfg.n_layers):
        direct = next_tokens(tiny, encode(tiny, prompts), [(Intervention(layer, t[layer]),) for t in thetas],
                             budget=ONE_BY_ONE)
        assert [tiny.tokenizer.decode([t]) for t in direct] == [s[layer] for s in swept]
    plain = [tiny.tokenizer.decode([t]) for t in next_tokens(tiny, encode(tiny, prompts), [()] * len(prompts))]
    _, unchanged = layer_sweep(tiny, prompts, thetas, lambda i, p: True, mode="add", strength=0.0)
    _, added = layer_sweep(tiny, prompts, thetas, lambda i, p: True, mode="add", strength=2.0)
    assert all(row == [p] * tiny.cfg.n_layers for row, p in zip(unchanged, plain)) and added != unchanged


def test_evaluate_is_reproducible_and_independent_of_batch_size(tiny_llama):
    task = shift_task()
    kwargs = dict(n_baseline=12, n_dev=6, n_test=6, n_shots=3)
    a = evaluate(tiny_llama, task, seed=3, **kwargs)
    b = evaluate(tiny_llama, task, seed=3, **kwargs)
    c = evaluate(tiny_llama, task, seed=3, budget=Budget(tokens=64, rows=3), **kwargs)
    d = evaluate(tiny_llama, task, seed=4, **kwargs)
    for other in (b, c):
        assert other.baseline == a.baseline and other.icl == a.icl and other.tv == a.tv
        assert other.dev_accuracy_by_layer == a.dev_accuracy_by_layer
        assert other.test_items == a.test_items
    assert [r.query for r in d.test_items] != [r.query for r in a.test_items]
    assert a.baseline.total == 12 and a.icl.total == 6 and len(a.dev_accuracy_by_layer) == tiny_llama.cfg.n_layers
    assert 0 <= a.best_layer < tiny_llama.cfg.n_layers
    assert a.dev_accuracy_by_layer[a.best_layer].value == max(x.value for x in a.dev_accuracy_by_layer)


def test_learn_and_apply_public_api(tiny_llama):
    theta = learn(tiny_llama, [("ab", "c"), ("de", "f")], dummies=["gh", "ij"], layer=1)
    assert theta.vectors.shape == (tiny_llama.cfg.n_layers, tiny_llama.cfg.d_model)
    preds = apply(tiny_llama, theta, ["kl", "mn", "o"])
    assert len(preds) == 3 and all(isinstance(p, str) for p in preds)
    assert apply(tiny_llama, theta, ["kl"], mode="add", strength=0.0) == apply_tokens_plain(tiny_llama, ["kl"])


def apply_tokens_plain(model, queries):
    outs = predict(model, [Run(t) for t in encode(model, [FMT.query(q) for q in queries])])
    return [model.tokenizer.decode([o.token]) for o in outs]


def test_errors_are_clear(tiny_llama, tiny_gemma):
    theta = learn(tiny_llama, [("ab", "c")], dummies=["gh"], layer=1)
    with pytest.raises(ValueError, match="out of range"):
        apply(tiny_llama, theta, ["kl"], layer=99)
    with pytest.raises(ValueError, match="no queries"):
        apply(tiny_llama, theta, [])
    with pytest.raises(ValueError, match="dummy"):
        learn(tiny_llama, [("ab", "c")], dummies=[])
    with pytest.raises(ValueError, match="layer 99 out of range"):
        learn(tiny_llama, [("ab", "c")], dummies=["gh"], layer=99)
    with pytest.raises(ValueError, match="n_dummies must be at least 1"):
        evaluate(tiny_llama, shift_task(), n_dummies=0)
    with pytest.raises(ValueError, match="at least one dummy query"):
        learn_items(tiny_llama, [Item(query="q", answers=("z",), demos=(("ab", "c"),), dummies=())], FMT)
    with pytest.raises(ValueError, match="another model|allow_transfer"):
        apply(tiny_gemma, theta, ["kl"])
    small = Task(name="small", category="custom", description="", pairs={"a": "b", "c": "d", "e": "f"})
    with pytest.raises(ValueError, match="lower n_shots"):
        evaluate(tiny_llama, small)
    bad = (Intervention(0, torch.randn(7)),)
    with pytest.raises(ValueError, match="d_model"):
        predict(tiny_llama, [Run([1, 40, 41], bad)])
    nan = (Intervention(0, torch.full((tiny_llama.cfg.d_model,), float("nan"))),)
    with pytest.raises(FloatingPointError, match="NaN"):
        predict(tiny_llama, [Run([1, 40, 41], nan)])


def test_prompts_longer_than_a_sliding_window_are_refused():
    from tv_lens.models.tiny import tiny_model

    model = tiny_model("tiny-gemma")
    model.original_model.config.sliding_window = 8
    with pytest.raises(ValueError, match="attention window"):
        predict(model, [Run(encode(model, ["example:abcdefgh->"])[0])])


def test_eval_result_round_trips_through_json_and_keeps_mean_theta_in_memory(tiny_llama):
    import json

    from tv_lens.task_vectors.evaluation import EvalResult

    result = evaluate(tiny_llama, shift_task(), n_baseline=4, n_dev=4, n_test=4, n_shots=3)
    assert result.mean_theta.shape == (tiny_llama.cfg.n_layers, tiny_llama.cfg.d_model)
    assert [len(result.hits.icl), len(result.hits.tv)] == [4, 4]
    assert Accuracy.of(result.hits.icl) == result.icl and Accuracy.of(result.hits.tv) == result.tv
    data = json.loads(json.dumps(result.to_dict()))
    assert "mean_theta" not in data
    again = EvalResult.from_dict(data)
    assert again == result and again.mean_theta is None


def test_a_vector_is_applied_at_its_own_hook(tiny_llama):
    from dataclasses import replace

    from tv_lens.task_vectors.generation import generate

    theta = learn(tiny_llama, [("ab", "c"), ("de", "f")], dummies=["gh", "ij"], layer=1)
    elsewhere = replace(theta, hook="blocks.{layer}.hook_elsewhere")
    for use in (apply, generate):
        with pytest.raises(Exception, match="blocks.1.hook_elsewhere"):
            use(tiny_llama, elsewhere, ["kl"])


def test_best_layer_is_the_first_with_the_highest_accuracy():
    from tv_lens.task_vectors.sweep import best_layer

    assert best_layer([0.2, 0.5, 0.5]) == 1 and best_layer([0.0, 0.0]) == 0 and best_layer([0.1, 0.3, 0.9]) == 2
    with pytest.raises(ValueError, match="at least one layer"):
        best_layer([])


def test_evaluate_tests_theta_at_the_best_dev_layer(tiny_llama, monkeypatch):

    from tv_lens.stats import Accuracy
    from tv_lens.task_vectors import evaluation as ev

    real_sweep, real_next, used = ev.layer_sweep, ev.next_tokens, []

    def sweep(*args, **kwargs):
        return [Accuracy(1, 4), Accuracy(3, 4), Accuracy(3, 4)], real_sweep(*args, **kwargs)[1]

    def next_at(model, prompts, interventions, **kwargs):
        used.extend({edit.layer for edits in interventions for edit in edits})
        return real_next(model, prompts, interventions, **kwargs)

    monkeypatch.setattr(ev, "layer_sweep", sweep)
    monkeypatch.setattr(ev, "next_tokens", next_at)
    result = evaluate(tiny_llama, shift_task(), n_baseline=4, n_dev=4, n_test=4, n_shots=3)
    assert result.best_layer == 1 and used == [1]


def test_every_apply_option_changes_the_answers_and_the_budget_does_not(tiny_llama):
    theta = learn(tiny_llama, [("ab", "c"), ("de", "f"), ("gh", "i")], dummies=["jk", "lm"], layer=1)
    queries = ["ab", "cd", "ef", "gh", "ij", "kl", "mn", "op"]
    answers = {
        "none": apply_tokens_plain(tiny_llama, queries),
        "replace": apply(tiny_llama, theta, queries),
        "replace@0": apply(tiny_llama, theta, queries, layer=0),
        "add": apply(tiny_llama, theta, queries, mode="add", strength=0.5),
        "add x2": apply(tiny_llama, theta, queries, mode="add", strength=1.0),
        "all": apply(tiny_llama, theta, queries, positions="all"),
    }
    assert len({tuple(a) for a in answers.values()}) == len(answers)
    for kwargs in ({}, {"mode": "add", "strength": 0.5, "positions": "all"}):
        assert apply(tiny_llama, theta, queries, budget=ONE_BY_ONE, **kwargs) == apply(tiny_llama, theta, queries,
                                                                                       **kwargs)
