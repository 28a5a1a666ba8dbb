"""Interventions: validation, head-indexed edits, the `intervening` / `theta.applied` context, and the
engine writing several interventions per row exactly as one-at-a-time runs do."""

import pytest
import torch

from tv_lens.patching import hooks
from tv_lens.patching.engine import Budget, Run, encode, predict
from tv_lens.patching.interventions import HOOK_Z, RESID_POST, Intervention, check_intervention, intervening
from tv_lens.task_vectors.applying import apply
from tv_lens.task_vectors.learning import learn
from tv_lens.tasks.prompts import PromptFormat

ONE_BY_ONE = Budget(tokens=1, rows=1)


def one_line_error(model, intervention, pattern):
    with pytest.raises(ValueError, match=pattern) as err:
        check_intervention(model, intervention)
    assert "\n" not in str(err.value)


def test_intervention_options_are_checked_when_built():
    v = torch.zeros(4)
    with pytest.raises(ValueError, match="mode must be one of"):
        Intervention(0, v, mode="multiply")
    for bad in ("first", (), (1.5,), (True,), (2, 2)):
        with pytest.raises(ValueError, match="positions must be"):
            Intervention(0, v, positions=bad)
    with pytest.raises(ValueError, match="needs a value"):
        Intervention(0, None, mode="add")
    assert Intervention(0, None, mode="scale", strength=0.0).value is None
    assert Intervention(0, v, positions=[0, -1]).positions == (0, -1)


def test_intervention_is_checked_against_the_model(tiny_llama):
    cfg = tiny_llama.cfg
    one_line_error(tiny_llama, Intervention(cfg.n_layers, torch.zeros(cfg.d_model)), "layer .* out of range")
    one_line_error(tiny_llama, Intervention(0, torch.zeros(7)), "d_model 64")
    one_line_error(tiny_llama, Intervention(0, torch.zeros(cfg.d_head), hook=HOOK_Z, head=cfg.n_heads),
                   "head 4 out of range")
    one_line_error(tiny_llama, Intervention(0, torch.zeros(cfg.d_model), hook=HOOK_Z, head=0), "d_head 16")
    one_line_error(tiny_llama, Intervention(0, torch.zeros(cfg.d_model), hook="blocks.{layer}.hook_nowhere"),
                   "no hook point 'blocks.0.hook_nowhere'")
    check_intervention(tiny_llama, Intervention(1, torch.zeros(cfg.d_head), hook=HOOK_Z, head=3))


def test_a_head_indexed_edit_changes_that_head_only(tiny_llama):
    tokens = tiny_llama.to_tokens(["example:ab->", "x->"], padding_side="left")
    name, head = HOOK_Z.format(layer=1), 2
    value = torch.randn(tiny_llama.cfg.d_head, generator=torch.Generator().manual_seed(0))
    with hooks.capturing(tiny_llama, name) as plain:
        plain_logits = tiny_llama(tokens)
    store: dict = {}
    edited_logits = tiny_llama.run_with_hooks(tokens, fwd_hooks=[hooks.replacing(name, value, index=-1, head=head),
                                                                 *hooks.capture_hooks([name], store)])
    before, after = plain[name], store[name]
    assert after.shape[2:] == (tiny_llama.cfg.n_heads, tiny_llama.cfg.d_head)
    expected = before.clone()
    expected[:, -1, head] = value
    assert torch.equal(after, expected)
    assert not torch.allclose(edited_logits[:, -1], plain_logits[:, -1], atol=1e-4)
    scaled: dict = {}
    zero_head_0 = hooks.scaling(name, 0.0, head=0)
    tiny_llama.run_with_hooks(tokens, fwd_hooks=[zero_head_0, *hooks.capture_hooks([name], scaled)])
    assert not scaled[name][:, :, 0].any() and torch.equal(scaled[name][:, :, 1:], before[:, :, 1:])


def test_theta_applied_is_apply(tiny_llama):
    theta = learn(tiny_llama, [("ab", "c"), ("de", "f"), ("gh", "i")], dummies=["jk", "lm"], layer=1)
    queries = ["kl", "mnop", "q"]
    for where in ({}, {"layer": 0}, {"mode": "add", "strength": 0.5}):
        with theta.applied(tiny_llama, **where):
            answers = [tiny_llama.tokenizer.decode([int(tiny_llama(tiny_llama.to_tokens(PromptFormat().query(q)))
                                                        [0, -1].argmax())]) for q in queries]
        assert answers == apply(tiny_llama, theta, queries, **where)
    plain = tiny_llama(tiny_llama.to_tokens("example:kl->"))
    with intervening(tiny_llama, theta.intervention()):
        assert not torch.allclose(tiny_llama(tiny_llama.to_tokens("example:kl->")), plain)
    assert torch.equal(tiny_llama(tiny_llama.to_tokens("example:kl->")), plain)  # removed after the block


def test_intervening_equals_the_engine_on_one_unpadded_run(tiny_llama):
    tokens = encode(tiny_llama, ["example:abc->"])[0]
    g = torch.Generator().manual_seed(3)
    edits = (Intervention(1, torch.randn(tiny_llama.cfg.d_model, generator=g), positions=(1, -2), mode="add"),
             Intervention(0, torch.randn(tiny_llama.cfg.d_head, generator=g), hook=HOOK_Z, head=2))
    (engine,) = predict(tiny_llama, [Run(tokens, edits)], logits=True)
    with intervening(tiny_llama, edits):
        direct = tiny_llama(torch.tensor([tokens]))[0, -1]
    assert torch.allclose(engine.logits, direct, atol=1e-5)
    assert not torch.allclose(engine.logits, tiny_llama(torch.tensor([tokens]))[0, -1], atol=1e-4)


def test_all_positions_mean_the_query_in_the_engine_and_in_intervening(tiny_llama):
    """"all" edits every real token after a leading BOS, padded in the engine or bare under `intervening`."""
    prompts = ["example:abc->", "example:a->"]
    tokens = encode(tiny_llama, prompts)
    assert tokens[0][0] == tiny_llama.tokenizer.bos_token_id
    edit = Intervention(1, torch.randn(tiny_llama.cfg.d_model, generator=torch.Generator().manual_seed(4)),
                        positions="all", mode="add")
    engine = predict(tiny_llama, [Run(t, (edit,)) for t in tokens], logits=True)
    query_only = Intervention(1, edit.value, positions=tuple(range(1, len(tokens[0]))), mode="add")
    with intervening(tiny_llama, edit):
        direct = tiny_llama(torch.tensor([tokens[0]]))[0, -1]
        text = tiny_llama(prompts[0])[0, -1]
    with intervening(tiny_llama, query_only):
        skipping_bos = tiny_llama(torch.tensor([tokens[0]]))[0, -1]
    assert torch.allclose(engine[0].logits, direct, atol=1e-5) and torch.allclose(direct, skipping_bos, atol=1e-6)
    assert torch.allclose(text, direct, atol=1e-6)


def test_applied_refuses_another_model(tiny_llama, tiny_gemma):
    theta = learn(tiny_llama, [("ab", "c")], dummies=["jk"], layer=1)
    with pytest.raises(ValueError, match="allow_transfer"):
        with theta.applied(tiny_gemma):
            pass


def mixed_runs(model):
    """Runs of different lengths with several interventions per row: residual and head edits,
    replace / add / scale, last / all / explicit positions."""
    g = torch.Generator().manual_seed(1)
    d, dh = model.cfg.d_model, model.cfg.d_head
    tokens = encode(model, ["example:ab->", "example:abcdef->", "x->", "example:q->"])
    edits = [
        (Intervention(1, torch.randn(d, generator=g)),),
        (Intervention(0, torch.randn(dh, generator=g), hook=HOOK_Z, head=1, mode="add", strength=3.0),
         Intervention(1, torch.randn(d, generator=g), mode="add", strength=0.5, positions="all")),
        (Intervention(1, None, hook=HOOK_Z, head=0, mode="scale", strength=0.0, positions=(1, -1)),
         Intervention(1, torch.randn(d, generator=g), positions=(0, 2))),
        (),
    ]
    return [Run(t, e, targets=(5, 6)) for t, e in zip(tokens, edits)]


def test_several_interventions_per_row_batched_equal_one_at_a_time(tiny_llama):
    runs = mixed_runs(tiny_llama)
    batched = predict(tiny_llama, runs, logits=True, capture=[1])
    alone = predict(tiny_llama, runs, logits=True, capture=[1], budget=ONE_BY_ONE)
    plain = predict(tiny_llama, [Run(r.tokens) for r in runs], logits=True)
    for b, a, p, r in zip(batched, alone, plain, runs):
        assert b.token == a.token
        assert torch.allclose(b.logits, a.logits, atol=1e-5)
        assert torch.allclose(b.captured[RESID_POST.format(layer=1)], a.captured[RESID_POST.format(layer=1)],
                              atol=1e-5)
        assert torch.allclose(b.target_probs, b.logits.softmax(-1)[[5, 6]], atol=1e-6)
        assert r.interventions == () or not torch.allclose(b.logits, p.logits, atol=1e-4)


def test_interventions_compose_in_their_order(tiny_llama):
    tokens = encode(tiny_llama, ["example:ab->"])[0]
    v = torch.randn(tiny_llama.cfg.d_model, generator=torch.Generator().manual_seed(2))
    replace_then_add = predict(tiny_llama, [Run(tokens, (Intervention(1, v), Intervention(1, v, mode="add")))],
                               logits=True, capture=[1])[0]
    assert torch.allclose(replace_then_add.captured[RESID_POST.format(layer=1)], 2 * v, atol=1e-6)
    add_then_replace = predict(tiny_llama, [Run(tokens, (Intervention(1, v, mode="add"), Intervention(1, v)))],
                               capture=[1])[0]
    assert torch.allclose(add_then_replace.captured[RESID_POST.format(layer=1)], v)


def test_explicit_positions_outside_the_run_are_refused(tiny_llama):
    run = Run(encode(tiny_llama, ["x->"])[0], (Intervention(0, torch.zeros(64), positions=(9,)),))
    with pytest.raises(ValueError, match="outside a run of 4 tokens"):
        predict(tiny_llama, [run])


def test_apply_generate_and_the_solver_take_interventions_of_ones_own(tiny_llama):
    from tv_lens.task_vectors.generation import generate
    from tv_lens.task_vectors.serving import TaskVectorSolver

    theta = learn(tiny_llama, [("ab", "c"), ("de", "f"), ("gh", "i")], dummies=["jk", "lm"], layer=1)
    queries = ["kl", "mnop", "q"]
    steer = theta.intervention(mode="add", strength=2.0)
    fmt = PromptFormat(**theta.prompt_format)
    assert apply(tiny_llama, [steer], queries, fmt=fmt) == apply(tiny_llama, theta, queries, mode="add", strength=2.0)
    assert generate(tiny_llama, steer, queries, max_new_tokens=3, fmt=fmt) == \
        generate(tiny_llama, theta, queries, max_new_tokens=3, mode="add", strength=2.0)
    assert TaskVectorSolver(tiny_llama, [steer])(queries) == [a.strip() for a in apply(tiny_llama, [steer], queries)]
    with pytest.raises(TypeError, match="mode, strength and positions place a TaskVector"):
        apply(tiny_llama, [steer], queries, mode="add")
    with pytest.raises(ValueError, match="d_model 64"):
        apply(tiny_llama, [Intervention(1, torch.zeros(3))], queries)


def test_a_function_vector_is_added_by_default_and_a_task_vector_replaces(tiny_llama):
    from tv_lens.task_vectors.vector import FunctionVector, TaskVector

    theta = learn(tiny_llama, [("ab", "c"), ("de", "f")], dummies=["jk"], layer=1)
    fv = FunctionVector(**{**theta.metadata(), "kind": "function_vector"}, vectors=theta.vectors)
    assert TaskVector.default_mode == "replace" and FunctionVector.default_mode == "add"
    assert theta.intervention().mode == "replace" and fv.intervention().mode == "add"
    with pytest.raises(ValueError, match="build a FunctionVector"):
        TaskVector(theta.vectors, kind="function_vector")
    assert fv.intervention(mode="replace").mode == "replace"
    queries = ["kl", "mnop", "q"]
    assert apply(tiny_llama, fv, queries) == apply(tiny_llama, theta, queries, mode="add")
    with fv.applied(tiny_llama, layer=0) as edit:
        assert edit.mode == "add" and edit.layer == 0
