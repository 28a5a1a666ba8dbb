"""The unembedding lens: exact on the final residual stream, and top tokens of θ."""

import pytest
import torch

from tv_lens.analysis.lens import project, top_tokens
from tv_lens.patching.engine import Run, encode, predict
from tv_lens.task_vectors.learning import learn


def test_lens_on_final_resid_post_reproduces_the_logits(tiny):
    prompts = ["example:a->b\nexample:c->", "example:hot->"]
    last = tiny.cfg.n_layers - 1
    outs = predict(tiny, [Run(t) for t in encode(tiny, prompts)], capture=[last], logits=True)
    for out in outs:
        lens = project(tiny, out.stack()[0]).cpu()
        assert (lens - out.logits).abs().max() / out.logits.abs().max() < 1e-4
        assert lens.argmax().item() == out.token


def test_top_tokens_of_a_task_vector(tiny_llama):
    theta = learn(tiny_llama, [("a", "b"), ("c", "d")], dummies=["e", "f"], layer=1)
    top = top_tokens(tiny_llama, theta, k=5)
    assert len(top.tokens) == len(top.ids) == len(top.scores) == 5
    assert top.scores == sorted(top.scores, reverse=True)
    assert top.tokens == [tiny_llama.tokenizer.decode([i]) for i in top.ids]
    same = top_tokens(tiny_llama, theta.vectors, k=5, layer=1)
    assert same.ids == top.ids
    centre = torch.randn(tiny_llama.cfg.d_model, generator=torch.Generator().manual_seed(0))
    centred = top_tokens(tiny_llama, theta, k=5, centre=centre)
    assert centred.ids == top_tokens(tiny_llama, theta.at(1) - centre, k=5).ids != top.ids


def test_top_tokens_errors(tiny_llama):
    with pytest.raises(ValueError, match="layer=L"):
        top_tokens(tiny_llama, torch.zeros(3, tiny_llama.cfg.d_model))
    with pytest.raises(ValueError, match="d_model"):
        top_tokens(tiny_llama, torch.zeros(7))
