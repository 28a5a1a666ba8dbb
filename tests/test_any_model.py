"""Any model: a bridge the user booted (TransformerLens's own boot, compatibility mode on) gives, through every
entry point, what load_model's bridge of the same weights gives, with prefix reuse on and off, and is left as it
was; a Hugging Face model object is wrapped by load_model; a model the engine cannot run is refused in one line."""

from contextlib import nullcontext

import pytest
import torch

import tv_lens as tv
from tv_lens.models.loading import ModelLoadError
from tv_lens.models.tiny import TINY_MODELS, tiny_hf_model
from tv_lens.patching import guard
from tv_lens.patching.engine import Budget, Run, encode, predict, prefill, step
from tv_lens.patching.guard import UnsupportedModelError
from tv_lens.tasks import get_task

DEMOS = [("a", "b"), ("c", "d"), ("e", "f"), ("g", "h"), ("k", "l")]
QUERIES = ["m", "p", "r", "t", "w"]
SMALL = dict(n_baseline=4, n_dev=4, n_test=4, n_shots=4)
FV_SMALL = dict(n_clean=4, n_corrupted=2, n_shots=4, fmt="arrow", queries="all")  # random weights: every query


def booted_by_hand(kind: str):
    """What a user does: their own Hugging Face model and tokenizer, TransformerLens's boot, compatibility mode."""
    from transformer_lens.model_bridge import TransformerBridge

    hf, tokenizer = tiny_hf_model(kind)  # a plain HF model: the weights tv_lens's tiny model draws
    bridge = TransformerBridge.boot_transformers(kind, hf_model=hf, tokenizer=tokenizer)
    bridge.enable_compatibility_mode(disable_warnings=True)
    return bridge


def without_timings(result) -> dict:
    return {k: v for k, v in result.to_dict().items() if k != "timings"}


def everything(model) -> dict:
    """What each entry point gives on `model`, prefix reuse on and off where a function takes it."""
    task = get_task("next_letter")
    theta = tv.learn(model, DEMOS, ["n", "x"], layer=1)
    out = {"theta": theta.vectors, "apply": tv.apply(model, theta, QUERIES),
           "generate": tv.generate(model, theta, QUERIES, max_new_tokens=6),
           "generate all": tv.generate(model, theta, QUERIES, max_new_tokens=6, positions="generated"),
           "generate sampled": tv.generate(model, theta, QUERIES, max_new_tokens=6, temperature=0.8, seed=0),
           "generate bare": tv.generate(model, None, QUERIES, max_new_tokens=6),
           "solver": tv.TaskVectorSolver(model, theta)(QUERIES),
           "sweep": tv.layer_sweep(model, ["m->", "p->"], [theta.vectors] * 2, lambda i, p: p == "n")[1],
           "learn_task": tv.learn_task(model, task, k=2, n_dev=4, n_shots=4).vectors}
    tokens = encode(model, ["abc->", "x->y\nz->"])
    runs = [[Run(t), Run(t[:-1] + [t[-2]])] for t in tokens]
    for reuse in (True, False):
        predictions = predict(model, runs, capture=[0, 2], logits=True, reuse_prefix=reuse, budget=Budget(rows=3))
        out[f"predict {reuse}"] = [(p.logits, p.stack()) for group in predictions for p in group]
        result = tv.evaluate(model, task, reuse_prefix=reuse, **SMALL)
        out[f"evaluate {reuse}"], out[f"mean theta {reuse}"] = without_timings(result), result.mean_theta
        out[f"aie {reuse}"] = tv.head_effects(model, task, reuse_prefix=reuse, **FV_SMALL).aie
    state = prefill(model, tokens[:1])
    out["steps"] = [state.logits]
    for _ in range(3):
        state = step(model, state, state.logits.argmax(-1))
        out["steps"].append(state.logits)
    effects = tv.head_effects(model, task, **FV_SMALL)
    out["function vector"] = tv.function_vector(model, task, k=3, heads="task", effects=effects, n_dev=4,
                                                **FV_SMALL).vectors
    return out


def assert_same(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where}: largest difference {(a - b).abs().max().item()}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module", params=TINY_MODELS)
def kind(request):
    return request.param


@pytest.fixture(scope="module")
def theirs_and_ours(kind, one_thread):
    theirs = booted_by_hand(kind)
    return theirs, everything(theirs), everything(tv.load_model(kind, device="cpu"))


def test_a_bridge_the_user_booted_gives_what_load_models_gives(theirs_and_ours):
    _, got, expected = theirs_and_ours
    assert_same(got, expected)


def test_the_comparison_can_fail(theirs_and_ours):
    """The answers depend on θ and the query, so a wrong θ or a cache read from nothing shows."""
    _, got, _ = theirs_and_ours
    assert len(set(got["generate"])) > 1 and got["generate"] != got["generate bare"]
    assert got["theta"].abs().max() > 1


def test_the_user_bridge_is_left_as_it_was(theirs_and_ours):
    """No key/value-cache workaround and no hook stays on it: its own forward passes are TransformerLens's."""
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    theirs, _, _ = theirs_and_ours
    attention = [m for m in theirs.modules() if isinstance(m, AttentionBridge)]
    assert attention and not any("_update_kv_cache" in vars(m) for m in attention)
    assert not any(point._forward_hooks for point in theirs.hook_dict.values())
    assert theirs.compatibility_mode and not theirs.training


def test_a_cache_that_stays_empty_is_refused_not_used(monkeypatch, one_thread):
    """Without the workaround the upstream bug leaves the cache empty: the engine notices instead of going on."""
    model = booted_by_hand("tiny-llama")
    monkeypatch.setattr(guard, "kv_cache_routed", lambda model: nullcontext())
    with pytest.raises(UnsupportedModelError, match="key/value cache holds 0 of") as err:
        tv.learn(model, DEMOS, ["n", "x"])
    assert "\n" not in str(err.value)
    with pytest.raises(UnsupportedModelError, match="key/value cache"):
        tv.generate(model, None, QUERIES)


@pytest.mark.parametrize("kind", TINY_MODELS)
def test_load_model_wraps_a_hugging_face_model(kind, one_thread):
    hf, tokenizer = tiny_hf_model(kind)
    ours, reference = tv.load_model(hf, tokenizer=tokenizer), tv.load_model(kind, device="cpu")
    assert ours.original_model is hf and ours.compatibility_mode and tv.fingerprint(ours) == tv.fingerprint(reference)
    theta = tv.learn(ours, DEMOS, ["n", "x"], layer=1)
    assert torch.equal(theta.vectors, tv.learn(reference, DEMOS, ["n", "x"], layer=1).vectors)
    assert tv.generate(ours, theta, QUERIES) == tv.generate(reference, theta, QUERIES)


@pytest.mark.parametrize("make, message", [
    (lambda: tv.load_model(tiny_hf_model()[0]), "needs its tokenizer: tv.load_model"),
    (lambda: tv.load_model(tiny_hf_model()[0], tokenizer=tiny_hf_model()[1], device_map="auto"),
     "place your model object"),
    (lambda: tv.load_model(booted_by_hand("tiny-llama")), "TransformerBridge already"),
    (lambda: tv.load_model(42), "cannot load a int"),
    (lambda: tv.load_model("tiny-llama", tokenizer=tiny_hf_model()[1]), "tokenizer= goes with"),
])
def test_load_model_refuses_what_it_cannot_wrap_in_one_line(make, message):
    with pytest.raises(ModelLoadError, match=message) as err:
        make()
    assert "\n" not in str(err.value)


def raw_bridge():
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers("tiny-llama", hf_model=tiny_hf_model()[0],
                                               tokenizer=tiny_hf_model()[1])


def in_training():
    model = booted_by_hand("tiny-llama")
    return model.train()


@pytest.fixture(scope="module")
def theta(tiny_llama):
    return tv.learn(tiny_llama, DEMOS, ["n"], layer=1)


ENTRY_POINTS = {
    "learn": lambda m, theta: tv.learn(m, DEMOS, ["n"], layer=1),
    "apply": lambda m, theta: tv.apply(m, theta, QUERIES),
    "generate": lambda m, theta: tv.generate(m, theta, QUERIES),
    "evaluate": lambda m, theta: tv.evaluate(m, get_task("next_letter"), **SMALL),
    "learn_task": lambda m, theta: tv.learn_task(m, get_task("next_letter"), k=2, n_dev=2),
    "layer_sweep": lambda m, theta: tv.layer_sweep(m, ["a->"], [theta.vectors], lambda i, p: True),
    "head_effects": lambda m, theta: tv.head_effects(m, get_task("next_letter"), **FV_SMALL),
    "function_vector": lambda m, theta: tv.function_vector(m, get_task("next_letter"), heads="task", **FV_SMALL),
    "solver": lambda m, theta: tv.TaskVectorSolver(m, theta),
    "top_tokens": lambda m, theta: tv.top_tokens(m, theta),
    "predict": lambda m, theta: predict(m, [Run([1, 2, 3])]),
    "prefill": lambda m, theta: prefill(m, [[1, 2, 3]]),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("make, message", [
    (lambda: tiny_hf_model()[0], r"not a LlamaForCausalLM: wrap it first: model = tv.load_model\(hf_model, tokenizer"),
    (raw_bridge, r"not in compatibility mode.*: call model.enable_compatibility_mode\(\) first"),
    (in_training, r"training mode.*: call model.eval\(\) first"),
    (lambda: "tiny-llama", r"not a str: load one with tv.load_model"),
], ids=["hugging face model", "no compatibility mode", "training mode", "a name"])
def test_every_entry_point_refuses_a_model_it_cannot_run_in_one_line(entry, make, message, theta):
    with pytest.raises(UnsupportedModelError, match=message) as err:
        ENTRY_POINTS[entry](make(), theta)
    assert "\n" not in str(err.value)
