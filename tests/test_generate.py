"""Multi-token generation with θ through the key/value cache, and scoring of generated answers."""

import pytest
import torch

from tv_lens.patching import hooks
from tv_lens.patching.engine import Run, encode, predict
from tv_lens.patching.interventions import RESID_POST, Intervention
from tv_lens.task_vectors.generation import end_tokens, generate, generate_tokens, score_generation
from tv_lens.task_vectors.learning import learn
from tv_lens.tasks import Task
from tv_lens.tasks.prompts import PromptFormat

FMT = PromptFormat()
N = 8


def reference(model, prompt, n=N, layer=None, vector=None, positions=(), patch_generated=False):
    """Greedy generation recomputing the whole sequence each step, no cache: θ replaces resid_post
    at `positions` of the prompt and, with `patch_generated`, at every generated token fed back."""
    tokens, generated = list(prompt), []
    for _ in range(n):
        where = list(positions) + (list(range(len(prompt), len(tokens))) if patch_generated else [])
        edits = [hooks.replacing(RESID_POST.format(layer=layer), vector, index=where)] if vector is not None else []
        with hooks.hooked(model, edits):
            token = int(model(torch.tensor([tokens], device=model.cfg.device))[0, -1].argmax())
        generated.append(token)
        tokens.append(token)
        if token in end_tokens(model) or "\n" in model.tokenizer.decode(generated):
            break
    return model.tokenizer.decode(generated, skip_special_tokens=True).split("\n")[0]


def texts(generations):
    return [g.text for g in generations]


def prompts(model):
    return encode(model, [FMT.render([("ab", "c"), ("de", "f")], "gh"), FMT.query("x"),
                          FMT.render([("q", "r")], "stuv")])


def test_cached_batched_generation_equals_full_recomputation(tiny):
    toks = prompts(tiny)
    expected = [reference(tiny, p) for p in toks]
    assert texts(generate_tokens(tiny, toks, max_new_tokens=N)) == expected
    assert [generate_tokens(tiny, [p], max_new_tokens=N)[0].text for p in toks] == expected


def test_theta_from_the_prompt_itself_leaves_generation_unchanged_at_every_layer(tiny):
    toks = prompts(tiny)
    plain = texts(generate_tokens(tiny, toks, max_new_tokens=N))
    outs = predict(tiny, [Run(t) for t in toks], capture=range(tiny.cfg.n_layers))
    for layer in range(tiny.cfg.n_layers):
        patches = [(Intervention(layer, o.stack()[layer]),) for o in outs]
        assert texts(generate_tokens(tiny, toks, patches, max_new_tokens=N)) == plain


def test_generated_tokens_are_patched_only_when_asked(tiny_llama):
    theta = learn(tiny_llama, [("ab", "c"), ("de", "f")], dummies=["gh", "ij"], layer=1)
    toks = prompts(tiny_llama)
    for patch_generated in (False, True):
        got = texts(generate_tokens(tiny_llama, toks, [(Intervention(1, theta.at(1)),)] * len(toks),
                                    max_new_tokens=N, patch_generated=patch_generated))
        want = [reference(tiny_llama, p, layer=1, vector=theta.at(1), positions=[len(p) - 1],
                          patch_generated=patch_generated) for p in toks]
        assert got == want
    every = texts(generate_tokens(tiny_llama, toks, [(Intervention(1, theta.at(1), positions="all"),)] * len(toks),
                                  max_new_tokens=N))
    assert every == [reference(tiny_llama, p, layer=1, vector=theta.at(1), positions=range(1, len(p)))
                     for p in toks]
    unpatched = texts(generate_tokens(tiny_llama, toks, max_new_tokens=N))
    once = texts(generate_tokens(tiny_llama, toks, [(Intervention(1, theta.at(1)),)] * len(toks), max_new_tokens=N))
    again = texts(generate_tokens(tiny_llama, toks, [(Intervention(1, theta.at(1)),)] * len(toks), max_new_tokens=N,
                                  patch_generated=True))
    assert len({tuple(unpatched), tuple(once), tuple(again), tuple(every)}) == 4  # each choice changes the text


def test_generate_writes_theta_into_the_query(tiny_llama):
    theta = learn(tiny_llama, [("ab", "c"), ("de", "f")], dummies=["gh", "ij"], layer=1)
    queries = ["kl", "m", "nop", "qr"]
    got = generate(tiny_llama, theta, queries, max_new_tokens=N)
    assert got != generate(tiny_llama, None, queries, max_new_tokens=N)
    assert got == [reference(tiny_llama, p, layer=1, vector=theta.at(1), positions=[len(p) - 1])
                   for p in encode(tiny_llama, [FMT.query(q) for q in queries])]


def test_generate_public_api_stops_and_refuses_bad_input(tiny_llama, tiny_gemma):
    theta = learn(tiny_llama, [("ab", "c")], dummies=["gh"], layer=1)
    texts = generate(tiny_llama, theta, ["kl", "m"], max_new_tokens=5)
    assert len(texts) == 2 and all("\n" not in t and len(t) <= 5 for t in texts)
    assert generate(tiny_llama, theta, ["kl"], max_new_tokens=1)[0] == \
        tiny_llama.tokenizer.decode([predict(tiny_llama, [Run(encode(tiny_llama, [FMT.query("kl")])[0],
                                                              (Intervention(1, theta.at(1)),))])[0].token],
                                    skip_special_tokens=True)
    assert generate(tiny_llama, None, ["kl"], max_new_tokens=N) == \
        [reference(tiny_llama, encode(tiny_llama, [FMT.query("kl")])[0])]
    with pytest.raises(ValueError, match="no queries"):
        generate(tiny_llama, theta, [])
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(tiny_llama, theta, ["kl"], max_new_tokens=0)
    with pytest.raises(ValueError, match="allow_transfer"):
        generate(tiny_gemma, theta, ["kl"])


def test_generation_stops_at_the_first_newline():
    class Scripted:
        """Stands in for a model whose greedy text is fixed, to test the stop rule alone."""

    from tv_lens.models.tiny import char_tokenizer
    from tv_lens.task_vectors.generation import finished

    model = Scripted()
    model.tokenizer = char_tokenizer()
    ids = model.tokenizer("Rome\nexample", add_special_tokens=False)["input_ids"]
    assert not finished(model, ids[:4], "\n") and finished(model, ids[:5], "\n")
    assert finished(model, [model.tokenizer.eos_token_id], "\n")


def test_score_generation_exact_and_prefix():
    capitals = Task(name="caps", category="knowledge", description="", scoring="prefix",
                    pairs={"Italy": "Rome", "United States": ["Washington, D.C.", "Washington"]})
    assert score_generation(capitals, "Italy", " Rome\nexample:France->Paris")
    assert score_generation(capitals, "Italy", " Rome, the eternal city")
    assert not score_generation(capitals, "Italy", " Ro")
    assert not score_generation(capitals, "Italy", "\nRome")
    assert score_generation(capitals, "United States", " Washington, D.C.")
    assert not score_generation(capitals, "Italy", " Rome, the eternal city", scoring="exact")
    words = Task(name="w", category="custom", description="", pairs={"hot": "cold"})
    assert score_generation(words, "hot", " cold \n") and not score_generation(words, "hot", " colder")
    with pytest.raises(ValueError, match="'exact' or 'prefix'"):
        score_generation(words, "hot", "cold", scoring="fuzzy")


@pytest.mark.slow
def test_cached_generation_is_exact_on_the_embedded_model(gemma):
    toks = encode(gemma, [FMT.render([("hot", "cold"), ("big", "small"), ("up", "down")], "fast"),
                          FMT.render([("France", "Paris")], "Italy")])
    plain = texts(generate_tokens(gemma, toks, max_new_tokens=6))
    assert plain == [reference(gemma, t, n=6) for t in toks]
    outs = predict(gemma, [Run(t) for t in toks], capture=[4, 9])
    for i, layer in enumerate((4, 9)):
        patches = [(Intervention(layer, o.stack()[i]),) for o in outs]
        assert texts(generate_tokens(gemma, toks, patches, max_new_tokens=6)) == plain


def test_a_vector_with_more_layers_than_the_model_is_a_clear_error(tiny_llama):
    from tv_lens.task_vectors.vector import TaskVector

    deeper = TaskVector(vectors=torch.zeros(6, tiny_llama.cfg.d_model), layer=5)
    with pytest.raises(ValueError, match="has 6 layers but the model has 3"):
        generate(tiny_llama, deeper, ["ab"])


def test_generation_in_batches_of_one_equals_one_batch(tiny_llama):
    from tv_lens.patching.engine import Budget

    theta = learn(tiny_llama, [("ab", "c"), ("de", "f")], dummies=["gh", "ij"], layer=1)
    queries = ["kl", "m", "nopq", "r", "st"]
    together = generate(tiny_llama, theta, queries, max_new_tokens=5)
    assert generate(tiny_llama, theta, queries, max_new_tokens=5, budget=Budget(rows=1)) == together
    assert generate(tiny_llama, theta, queries, max_new_tokens=5, budget=Budget(tokens=20)) == together
