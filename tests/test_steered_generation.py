"""Steered generation: sampling (temperature, top-k, top-p, seeds), the cached path against full
recomputation, batches against single prompts, stop strings, chat templates and where the vector goes."""

import math

import pytest
import torch

from tv_lens.patching import hooks
from tv_lens.patching.engine import Budget, encode
from tv_lens.patching.interventions import RESID_POST, Intervention
from tv_lens.task_vectors.decoding import Sampling, generators, row_seed, row_seeds
from tv_lens.task_vectors.generation import Generation, chat_prompts, cut, generate, generate_tokens
from tv_lens.task_vectors.learning import learn
from tv_lens.tasks.prompts import PromptFormat

FMT = PromptFormat()
QUERIES = ["kl", "m", "nopq", "r", "st"]
WARM = dict(temperature=1.5, max_new_tokens=6)


@pytest.fixture(scope="module")
def theta(tiny_llama):
    return learn(tiny_llama, [("ab", "c"), ("de", "f")], dummies=["gh", "ij"], layer=1)


def recomputed(model, prompt, n, sampling, seed, value=None, layer=1, positions=(), steer_generated=False,
               mode="replace", strength=1.0):
    """Generation with no cache: the whole sequence runs again for every token, the vector written at
    `positions` of the prompt and (with `steer_generated`) at every position from the prompt's last
    token on; tokens chosen by `sampling` with a generator seeded `seed`. Returns (tokens, logits)."""
    tokens, chosen, logits = list(prompt), [], []
    rng = generators([seed])
    for _ in range(n):
        where = list(positions) + (list(range(len(prompt) - 1, len(tokens))) if steer_generated else [])
        name = RESID_POST.format(layer=layer)
        edit = (hooks.replacing(name, value, index=sorted(set(where))) if mode == "replace"
                else hooks.adding(name, value, strength, index=sorted(set(where))))
        with hooks.hooked(model, [edit] if value is not None and where else []):
            last = model(torch.tensor([tokens], device=model.cfg.device))[:, -1]
        token = int(sampling.choose(last, rng)[0])
        logits.append(last[0].float())
        chosen.append(token)
        tokens.append(token)
    return chosen, torch.stack(logits)


def test_sampling_keeps_the_top_k_and_the_top_p_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    assert torch.allclose(Sampling(1.0).probabilities(logits), torch.tensor([[0.5, 0.3, 0.2]]))
    assert torch.allclose(Sampling(1.0, top_p=0.6).probabilities(logits), torch.tensor([[0.625, 0.375, 0.0]]))
    assert torch.allclose(Sampling(1.0, top_p=0.5).probabilities(logits), torch.tensor([[1.0, 0.0, 0.0]]))
    assert torch.allclose(Sampling(1.0, top_k=2).probabilities(logits), torch.tensor([[0.625, 0.375, 0.0]]))
    hot = Sampling(2.0).probabilities(logits)[0]
    expected = torch.tensor([0.5, 0.3, 0.2]).sqrt()
    assert torch.allclose(hot, expected / expected.sum())
    draws = Sampling(1.0).choose(logits.expand(4000, 3), generators(range(4000)))
    assert abs(float((draws == 0).float().mean()) - 0.5) < 0.04  # a draw, not an argmax


@pytest.mark.parametrize("bad, match", [(dict(temperature=-1), "temperature"), (dict(temperature=math.nan),
                                                                                   "temperature"),
                                        (dict(top_p=0), "top_p"), (dict(top_p=1.5), "top_p"),
                                        (dict(top_k=-1), "top_k"), (dict(top_k=2.5), "top_k")])
def test_bad_sampling_settings_are_one_line_errors(tiny_llama, bad, match):
    with pytest.raises(ValueError, match=match) as info:
        generate(tiny_llama, None, ["kl"], **bad)
    assert "\n" not in str(info.value)


def test_temperature_zero_is_greedy_whatever_the_other_settings(tiny_llama, theta):
    greedy = generate(tiny_llama, theta, QUERIES, max_new_tokens=6)
    assert generate(tiny_llama, theta, QUERIES, max_new_tokens=6, temperature=0, top_p=0.3, top_k=3, seed=5) == greedy
    assert generate(tiny_llama, theta, QUERIES, temperature=1.0, top_k=1, seed=9, max_new_tokens=6) == greedy
    assert generate(tiny_llama, theta, QUERIES, seed=3, **WARM) != greedy


@pytest.mark.parametrize("positions", ["last", "generated", "all"])
def test_cached_sampling_equals_full_recomputation_in_tokens_and_logits(tiny, positions):
    from tv_lens.task_vectors.learning import learn

    vector = learn(tiny, [("ab", "c"), ("de", "f")], dummies=["gh"], layer=1)
    prompts = encode(tiny, [FMT.query(q) for q in QUERIES[:3]])
    sampling = Sampling(temperature=1.3, top_p=0.95, top_k=40)
    edit = Intervention(1, vector.at(1), positions="all" if positions == "all" else "last")
    got = generate_tokens(tiny, prompts, [(edit,)] * len(prompts), max_new_tokens=7, stop=None, sampling=sampling,
                          seeds=[11, 12, 13], keep_logits=True, patch_generated=positions != "last")
    for prompt, seed, generation in zip(prompts, [11, 12, 13], got):
        n = len(generation.tokens)
        where = range(1, len(prompt)) if positions == "all" else [len(prompt) - 1]
        tokens, logits = recomputed(tiny, prompt, n, sampling, seed, vector.at(1), positions=where,
                                    steer_generated=positions != "last")
        assert generation.tokens == tokens
        assert generation.logits.shape == (n, tiny.cfg.d_vocab)
        assert torch.allclose(generation.logits, logits, atol=1e-4, rtol=1e-4)


def test_the_same_seed_gives_the_same_text_and_the_global_generator_is_untouched(tiny_llama, theta):
    state = torch.get_rng_state()
    first = generate(tiny_llama, theta, QUERIES, seed=7, **WARM)
    torch.manual_seed(123)  # the library never reads torch's global generator
    assert generate(tiny_llama, theta, QUERIES, seed=7, **WARM) == first
    torch.set_rng_state(state)
    generate(tiny_llama, theta, QUERIES, seed=7, **WARM)
    generate(tiny_llama, theta, QUERIES, seed=None, **WARM)
    assert torch.equal(torch.get_rng_state(), state)
    assert generate(tiny_llama, theta, QUERIES, seed=8, **WARM) != first
    repeated = generate(tiny_llama, theta, ["kl"] * 6, seed=7, **WARM)
    assert len(set(repeated)) > 1  # each copy of a query draws its own text


def test_batched_sampling_equals_one_query_at_a_time(tiny_llama, theta):
    together = generate(tiny_llama, theta, QUERIES, seed=4, **WARM)
    alone = [generate(tiny_llama, theta, [q], seed=[row_seed(4, i)], **WARM)[0] for i, q in enumerate(QUERIES)]
    assert together == alone
    assert generate(tiny_llama, theta, QUERIES, seed=4, budget=Budget(rows=1), **WARM) == together
    assert generate(tiny_llama, theta, QUERIES, seed=4, budget=Budget(tokens=24), **WARM) == together
    assert generate(tiny_llama, theta, QUERIES, seed=row_seeds(4, len(QUERIES)), **WARM) == together


def test_seed_lists_are_checked():
    assert row_seeds([1, 2], 2) == [1, 2] and row_seeds(0, 2) == [row_seed(0, 0), row_seed(0, 1)]
    assert row_seed(0, 1) != row_seed(1, 0)
    with pytest.raises(ValueError, match="one integer >= 0 per query"):
        row_seeds([1], 2)
    with pytest.raises(TypeError, match="seed must be an integer"):
        row_seeds("7", 1)


def test_stop_strings_cut_the_text_and_none_runs_to_the_length(tiny_llama, theta):
    free = generate_tokens(tiny_llama, encode(tiny_llama, [FMT.query("kl")]), max_new_tokens=12, stop=None)[0]
    assert isinstance(free, Generation)
    assert len(free.tokens) == 12 or free.tokens[-1] == tiny_llama.tokenizer.eos_token_id
    text = tiny_llama.tokenizer.decode(free.tokens, skip_special_tokens=True)
    assert free.text == text
    marker = text[3:5]
    if marker:
        stopped = generate(tiny_llama, None, ["kl"], max_new_tokens=12, stop=[marker, "\u2603"])[0]
        assert stopped == text[:text.find(marker)]
    assert cut("ab\ncd;ef", ["\n", ";"]) == "ab" and cut("abc", []) == "abc"
    with pytest.raises(ValueError, match="non-empty strings"):
        generate(tiny_llama, None, ["kl"], stop=[""])


def test_positions_place_the_vector_as_generate_tokens_does(tiny_llama, theta):
    prompts = encode(tiny_llama, [FMT.query(q) for q in QUERIES])
    for positions, iv_positions, patch_generated in (("last", "last", False), ("generated", "last", True),
                                                     ("all", "all", True), ((1, -1), (1, -1), False)):
        edit = Intervention(1, theta.at(1), positions=iv_positions)
        expected = [g.text for g in generate_tokens(tiny_llama, prompts, [(edit,)] * len(prompts), max_new_tokens=6,
                                                    patch_generated=patch_generated)]
        assert generate(tiny_llama, theta, QUERIES, positions=positions, max_new_tokens=6) == expected, positions
        if positions in ("last", "generated"):
            assert generate(tiny_llama, [edit], QUERIES, positions=positions, max_new_tokens=6) == expected


def test_strength_and_mode_steer_by_addition(tiny_llama, theta):
    prompts = encode(tiny_llama, [FMT.query(q) for q in QUERIES])
    plain = generate(tiny_llama, None, QUERIES, max_new_tokens=6)
    assert generate(tiny_llama, theta, QUERIES, mode="add", strength=0.0, positions="all", max_new_tokens=6) == plain
    steered = generate(tiny_llama, theta, QUERIES, mode="add", strength=3.0, positions="generated", max_new_tokens=6)
    edit = Intervention(1, theta.at(1), mode="add", strength=3.0)
    assert steered == [g.text for g in generate_tokens(tiny_llama, prompts, [(edit,)] * 5, max_new_tokens=6,
                                                       patch_generated=True)]
    assert steered != plain


def test_misplaced_arguments_are_one_line_errors(tiny_llama, theta):
    edit = Intervention(1, theta.at(1))
    for bad in (dict(layer=1), dict(strength=2.0), dict(mode="add"), dict(positions="all")):
        with pytest.raises(TypeError, match="place a TaskVector"):
            generate(tiny_llama, [edit], ["kl"], **bad)
    with pytest.raises(ValueError, match="positions must be one of last, generated, all"):
        generate(tiny_llama, theta, ["kl"], positions="every")
    with pytest.raises(ValueError, match="no chat template"):
        generate(tiny_llama, theta, ["kl"], chat=True)


def test_chat_template_wraps_each_query_as_the_users_message():
    from tv_lens.models.tiny import char_tokenizer, tiny_model

    tokenizer = char_tokenizer()
    tokenizer.chat_template = ("{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}[assistant]{% endif %}")
    model = tiny_model("tiny-llama", tokenizer=tokenizer)
    theta = learn(model, [("ab", "c"), ("de", "f")], dummies=["gh"], layer=1)
    wrapped = chat_prompts(model, ["kl", "what?"])
    assert wrapped == [tokenizer("[user]kl\n[assistant]", add_special_tokens=False)["input_ids"],
                       tokenizer("[user]what?\n[assistant]", add_special_tokens=False)["input_ids"]]
    expected = [g.text for g in generate_tokens(model, wrapped, [(Intervention(1, theta.at(1)),)] * 2,
                                                max_new_tokens=5)]
    assert generate(model, theta, ["kl", "what?"], chat=True, max_new_tokens=5) == expected
    with pytest.raises(ValueError, match="drop fmt"):
        generate(model, theta, ["kl"], chat=True, fmt=FMT)


@pytest.mark.slow
def test_chat_generation_on_the_instruction_model():
    from tv_lens.models.loading import load_model

    model = load_model("smollm2-135m")
    prompt = chat_prompts(model, ["Name a colour."])[0]
    assert model.tokenizer.decode(prompt).rstrip().endswith("assistant")
    text = generate(model, None, ["Name a colour."], chat=True, max_new_tokens=12, stop=None)[0]
    assert text.strip() and "<|im_start|>" not in text
    sampled = generate(model, None, ["Name a colour."] * 2, chat=True, max_new_tokens=8, temperature=0.8, seed=1)
    assert sampled == generate(model, None, ["Name a colour."] * 2, chat=True, max_new_tokens=8, temperature=0.8,
                               seed=1)
