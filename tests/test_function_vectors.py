"""Function vectors: head effects (AIE), their formulations, and the file format they share with task vectors."""

import json
import re
from html import unescape

import pytest
import torch

from tv_lens.function_vectors.items import fv_items, task_in_format
from tv_lens.function_vectors.mediation import HeadEffects, head_effects
from tv_lens.function_vectors.vector import FORMULATIONS, function_vector, fv_vectors
from tv_lens.patching import heads
from tv_lens.patching.engine import Budget, Run, encode, predict
from tv_lens.patching.interventions import HOOK_Z, Intervention, intervening
from tv_lens.task_vectors.vector import FUNCTION_VECTOR, TASK_VECTOR, FunctionVector, TaskVector, VectorFileError
from tv_lens.tasks import get_task


def test_kind_and_heads_round_trip_and_default_to_a_task_vector(tmp_path):
    fv = FunctionVector(torch.randn(3, 8), layer=1, heads=[[1, 2, 0.25], [0, 3, 0.125]])
    back = TaskVector.load(fv.save(tmp_path / "fv.safetensors"))
    assert type(back) is FunctionVector and back.kind == FUNCTION_VECTOR and back.heads == [[1, 2, 0.25], [0, 3, 0.125]]
    assert torch.equal(back.vectors, fv.vectors) and "function vector" in back.summary()
    assert TaskVector(torch.zeros(3, 8)).kind == TASK_VECTOR


def test_an_unknown_kind_is_refused_in_one_line(tmp_path):
    from safetensors.torch import save_file

    meta = {**TaskVector(torch.zeros(2, 4)).metadata(), "kind": "steering_vector"}
    path = tmp_path / "odd.safetensors"
    save_file({"vectors": torch.zeros(2, 4)}, str(path), metadata={"format": "pt", "tv_lens": json.dumps(meta)})
    with pytest.raises(VectorFileError, match="'kind' is 'steering_vector', not one of") as info:
        TaskVector.load(path)
    assert "\n" not in str(info.value)


# the character tokenizer has no one-token " y" for Q:/A:, and tiny-gemma's attention window is 128 tokens
SMALL = dict(n_clean=6, n_corrupted=3, n_shots=5, fmt="arrow")
PROMPT = "Q: ab\nA: c\n\nQ: de\nA: f\n\nQ: gh\nA:"


@pytest.fixture(scope="module")
def effects(tiny, one_thread):
    return head_effects(tiny, get_task("to_upper"), **SMALL)


def test_patching_each_head_with_its_own_output_changes_no_logit(tiny, one_thread):
    tokens = encode(tiny, [PROMPT])[0]
    names = [HOOK_Z.format(layer=layer) for layer in range(tiny.cfg.n_layers)]
    own = predict(tiny, [Run(tokens)], capture=names, logits=True)[0]
    runs = [Run(tokens, (Intervention(layer, own.captured[names[layer]][head], hook=HOOK_Z, head=head),))
            for layer in range(tiny.cfg.n_layers) for head in range(tiny.cfg.n_heads)]
    for patched in predict(tiny, [runs], logits=True)[0]:
        assert torch.allclose(patched.logits, own.logits, atol=1e-5)


def test_a_head_patch_moves_the_attention_output_by_that_heads_contribution(tiny, one_thread):
    tokens = tiny.to_tokens(PROMPT)
    name = heads.PRE_NORM_HOOK.format(layer=1)
    _, before = tiny.run_with_cache(tokens, names_filter=[name, HOOK_Z.format(layer=1)])
    value = torch.randn(tiny.cfg.d_head)
    with intervening(tiny, [Intervention(1, value, hook=HOOK_Z, head=2)]):
        _, after = tiny.run_with_cache(tokens, names_filter=[name])
    delta = value - before[HOOK_Z.format(layer=1)][0, -1, 2]
    expected = before[name][0, -1] + delta @ tiny.blocks[1].attn.W_O[2]
    assert torch.allclose(after[name][0, -1], expected, atol=1e-5)
    assert torch.allclose(after[name][0, :-1], before[name][0, :-1])


def test_an_indirect_effect_is_the_change_in_probability_of_the_answer(tiny, effects, one_thread):
    kept, fmt = task_in_format(tiny, get_task("to_upper"), "arrow", n_shots=5)
    item = fv_items(kept, 0, n_shots=5, n_clean=6, n_corrupted=3, n_dev=1, n_test=1).corrupted[1]
    tokens = tiny.to_tokens(fmt.icl_prompt(item))
    query = tiny.to_tokens(fmt.query(item.query))
    target = tiny.to_tokens(fmt.demo(item.query, item.answers[0]))[0, query.shape[1]]
    layer, head, _ = effects.top_heads(1)[0]
    with torch.no_grad():
        plain = tiny(tokens)[0, -1].softmax(-1)[target]
        with intervening(tiny, [Intervention(layer, effects.mean_z[layer, head], hook=HOOK_Z, head=head)]):
            patched = tiny(tokens)[0, -1].softmax(-1)[target]
    assert effects.effects[1, layer, head] == pytest.approx(float(patched - plain), abs=1e-6)


def test_aie_with_prefix_reuse_and_batching_equals_full_prompts_one_at_a_time(tiny, effects, one_thread):
    full = head_effects(tiny, get_task("to_upper"), reuse_prefix=False, budget=Budget(rows=1), **SMALL)
    batched_full = head_effects(tiny, get_task("to_upper"), reuse_prefix=False, **SMALL)
    assert torch.allclose(effects.effects, full.effects, atol=1e-6)
    assert torch.allclose(batched_full.effects, full.effects, atol=1e-6)
    assert torch.allclose(effects.mean_z, full.mean_z, atol=1e-6)
    assert effects.effects.abs().max() > 0


def test_head_effects_summaries(effects):
    low, high = effects.interval
    assert torch.all(low <= effects.aie) and torch.all(effects.aie <= high)
    top = effects.top_heads(5)
    assert [a for _, _, a in top] == sorted((a for _, _, a in top), reverse=True)
    assert top[0][2] == pytest.approx(float(effects.aie.max()))
    back = HeadEffects.from_parts(effects.to_dict(), effects.tensors())
    assert torch.equal(back.aie, effects.aie) and back.to_dict() == effects.to_dict()
    with pytest.raises(ValueError, match="k must be between"):
        effects.top_heads(0)


def test_formulations(tiny, effects):
    vectors = {f: fv_vectors(tiny, effects, 3, f) for f in FORMULATIONS}
    top = effects.top_heads(3)
    assert torch.allclose(vectors["residual"][0], sum(effects.mean_share[layer, head] for layer, head, _ in top))
    same = torch.allclose(vectors["residual"], vectors["out_proj"], atol=1e-5)
    assert same != heads.has_post_attention_norm(tiny)  # equal without a post-attention norm, not with one
    assert torch.allclose(vectors["scaled"].norm(dim=-1), effects.resid_norm, rtol=1e-4)
    with pytest.raises(ValueError, match="unknown FV formulation"):
        fv_vectors(tiny, effects, 3, "sum")


def test_a_saved_function_vector_gives_the_same_answers_and_is_added(tiny_llama, tmp_path, one_thread):
    from tv_lens.task_vectors.applying import apply

    fv = function_vector(tiny_llama, get_task("to_upper"), k=3, n_dev=4, **SMALL)
    back = TaskVector.load(fv.save(tmp_path / "fv.safetensors"))
    assert back.kind == FUNCTION_VECTOR and [h[:2] for h in back.heads] == [h[:2] for h in fv.heads]
    queries = ["ab", "xyz", "q"]
    answers = apply(tiny_llama, back, queries, layer=1)
    assert answers == apply(tiny_llama, fv, queries, layer=1)
    assert answers == apply(tiny_llama, fv, queries, layer=1, mode="add")
    assert back.intervention(1).mode == "add"


def test_a_function_vector_refuses_a_model_of_another_width(tiny_llama):
    from tv_lens.task_vectors.applying import apply

    narrow = FunctionVector(torch.zeros(3, 32), layer=1)
    with pytest.raises(ValueError, match="d_model 32"):
        apply(tiny_llama, narrow, ["ab"])


def test_the_analysis_runs_resumes_and_makes_its_figures(tiny_llama, tmp_path, one_thread):
    from analyses import function_vectors as analysis
    from figures import make as figures
    from tv_lens.report.tables import as_html, as_text
    from tv_lens.runs.store import load_results

    settings = analysis.FVSettings().but(n_clean=4, n_corrupted=2, n_dev=3, n_test=3, k=3, tv_contexts=2)
    lines = []
    first = analysis.run(tiny_llama, tmp_path, ["to_upper", "next_letter"], settings, progress=lines.append)
    assert first.computed == ["arrow__to_upper", "arrow__next_letter"]  # no one-token " y" for qa on tiny
    assert any(line.startswith("[function_vectors] qa to_upper skipped: ") for line in lines)
    saved = load_results(tmp_path / "function_vectors")
    run = saved.runs[0]
    assert len(run.aie) == tiny_llama.cfg.n_layers and len(run.aie[0]) == tiny_llama.cfg.n_heads
    assert set(run.fv) == set(FORMULATIONS) and len(run.fv["residual"].zero_shot_by_layer) == 3
    assert run.baseline.total == run.icl.total == 3 and len(run.top_heads) == 3
    again = analysis.run(tiny_llama, tmp_path, ["to_upper", "next_letter"], settings, progress=lambda m: None)
    assert again.computed == [] and again.results.runs == saved.runs
    table = as_text(saved)
    assert table.split() == unescape(re.sub(r"<[^>]+>", " ", as_html(saved))).split()
    assert "arrow prompts: task" in table and "mean (2 tasks)" in table and "top heads (layer, head, AIE)" in table
    written = {p.name for p in figures.make(tmp_path, png=False)}
    assert {"function_vectors_heads_arrow.html", "function_vectors_layers_arrow.html"} <= written
    assert "Function vectors" in (tmp_path / "figures" / "report.html").read_text()


def test_the_fv_command_saves_a_function_vector(tmp_path, capsys, one_thread):
    from tv_lens.cli.main import main

    out = tmp_path / "upper.safetensors"
    assert main(["fv", "--task", "to_upper", "--model", "tiny-llama", "--k", "3", "--n-clean", "4",
                 "--n-corrupted", "2", "--n-dev", "3", "--format", "arrow", "--out", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "top 3 heads by average indirect effect" in printed and "saved" in printed
    fv = TaskVector.load(out)
    assert fv.kind == FUNCTION_VECTOR and len(fv.heads) == 3 and fv.model == "tiny-llama"
    assert main(["fv", "--task", "to_upper", "--model", "tiny-llama", "--k", "0", "--n-clean", "4",
                 "--n-corrupted", "2", "--format", "arrow", "--out", str(out)]) == 2
    assert "argument --k: must be at least 1, got 0" in capsys.readouterr().err  # before the model loads


def test_the_benchmark_prints_its_figures(monkeypatch, capsys, one_thread):
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "function_vectors.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--model", "tiny-llama", "--task", "to_upper", "--n-clean", "4",
                                      "--n-corrupted", "2", "--n-dev", "3", "--n-test", "3", "--format", "arrow"])
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert "by phase" in printed and "floor of this algorithm" in printed
