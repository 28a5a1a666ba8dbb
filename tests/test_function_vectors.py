"""Function vectors: head effects (AIE), their formulations, and the file format they share with task vectors."""

import json
import re
from html import unescape

import pytest
import torch

from tv_lens.function_vectors import items as items_module
from tv_lens.function_vectors.items import fv_items, task_in_format
from tv_lens.function_vectors.mediation import HeadEffects, UniversalHeads, head_effects, universal_heads
from tv_lens.function_vectors.vector import FORMULATIONS, UNIVERSAL_TASKS, function_vector, fv_vectors
from tv_lens.patching import heads
from tv_lens.patching.engine import Budget, Run, encode, predict
from tv_lens.patching.interventions import HOOK_Z, Intervention, intervening
from tv_lens.settings import FV_HEADS
from tv_lens.stats import Accuracy
from tv_lens.task_vectors.vector import FUNCTION_VECTOR, TASK_VECTOR, FunctionVector, TaskVector, VectorFileError
from tv_lens.tasks import get_task
from tv_lens.tasks.builtin import BUILTIN_TASKS


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


# the character tokenizer has no one-token " y" for Q:/A:, tiny-gemma's attention window is 128 tokens, and
# random weights answer almost nothing right (the ICL-correct filter: tests/test_fv_prompts.py and below)
SMALL = dict(n_clean=6, n_corrupted=3, n_shots=5, fmt="arrow", queries="all")
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
    item = fv_items(tiny, kept, fmt, 0, n_shots=5, n_clean=6, n_corrupted=3, n_test=0, queries="all").corrupted[1]
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
    top = effects.top_heads(3)
    vectors = {f: fv_vectors(tiny, effects, top, f) for f in FORMULATIONS}
    assert torch.allclose(vectors["residual"][0], sum(effects.mean_share[layer, head] for layer, head, _ in top))
    same = torch.allclose(vectors["residual"], vectors["out_proj"], atol=1e-5)
    assert same != heads.has_post_attention_norm(tiny)  # equal without a post-attention norm, not with one
    assert torch.allclose(vectors["scaled"].norm(dim=-1), effects.resid_norm, rtol=1e-4)
    with pytest.raises(ValueError, match="unknown FV formulation"):
        fv_vectors(tiny, effects, top, "sum")
    with pytest.raises(ValueError, match="at least one head"):
        fv_vectors(tiny, effects, [])


def test_a_saved_function_vector_gives_the_same_answers_and_is_added(tiny_llama, tmp_path, one_thread):
    from tv_lens.task_vectors.applying import apply

    fv = function_vector(tiny_llama, get_task("to_upper"), k=3, heads="task", n_dev=4, **SMALL)
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


def test_the_analysis_runs_resumes_and_makes_its_figures(tiny_llama, favourite, tmp_path, one_thread):
    from analyses import function_vectors as analysis
    from figures import make as figures
    from tv_lens.report.tables import as_html, as_text
    from tv_lens.runs.store import load_results

    tasks = [favourite(), favourite("favourite_too", other="Zq"), "to_upper"]
    settings = analysis.FVSettings().but(n_clean=4, n_corrupted=2, n_dev=3, n_test=3, k=3, tv_contexts=2)
    lines = []
    first = analysis.run(tiny_llama, tmp_path, tasks, settings, formats=["arrow", "qa"], progress=lines.append)
    assert first.computed[-2:] == ["arrow__favourite", "arrow__favourite_too"]  # the second pass
    assert any(line.startswith("[function_vectors] qa to_upper skipped: ") for line in lines)  # no ' A' token
    assert any("arrow to_upper skipped: " in line and "answers none of the" in line for line in lines)
    saved = load_results(tmp_path / "function_vectors")
    assert {(s.format, s.task) for s in saved.skipped} == {("arrow", "to_upper"), ("qa", "favourite"),
                                                          ("qa", "favourite_too"), ("qa", "to_upper")}
    universal = saved.universal["arrow"]
    assert universal.tasks == ["favourite", "favourite_too"] and "qa" not in saved.universal
    mean = torch.tensor([r.aie for r in saved.runs]).mean(0)
    assert torch.allclose(torch.tensor(universal.aie), mean, atol=1e-6)
    run = saved.runs[0]
    assert [h[:2] for h in run.heads["universal"]] == [h[:2] for h in universal.top_heads(3)]
    assert run.heads["task"] == HeadEffects.from_parts(*_heads_unit(tmp_path, "arrow__favourite")).top_heads(3)
    assert run.queries == "icl_correct" and run.aie_all is not None and run.icl_valid.total >= run.icl_valid.correct
    assert len(run.aie) == tiny_llama.cfg.n_layers and len(run.aie[0]) == tiny_llama.cfg.n_heads
    assert set(run.fv) == {"universal", "task"} and set(run.fv["universal"]) == set(FORMULATIONS)
    assert len(run.fv["task"]["residual"].zero_shot_by_layer) == 3
    assert run.baseline.total == run.shuffled_icl.total == 3  # the ICL-correct test queries
    again = analysis.run(tiny_llama, tmp_path, tasks, settings, formats=["arrow", "qa"], progress=lambda m: None)
    assert again.computed == [] and again.results.runs == saved.runs
    table = as_text(saved)
    assert table.split() == unescape(re.sub(r"<[^>]+>", " ", as_html(saved))).split()
    for shown in ("arrow prompts: task", "mean (2 tasks)", "universal set (mean over 2 tasks)",
                  "FV universal heads zero-shot (layer)", "FV task's own heads shuffled (layer)",
                  "top head, ICL-correct queries", "qa prompts: task skipped"):
        assert shown in table, shown
    written = {p.name for p in figures.make(tmp_path, png=False)}
    assert {"function_vectors_heads_arrow.html", "function_vectors_layers_arrow.html"} <= written
    assert "Function vectors" in (tmp_path / "figures" / "report.html").read_text()


def _heads_unit(run_dir, key):
    """The effects and tensors of a first-pass unit, read from disk."""
    from safetensors.torch import load_file

    record = json.loads((run_dir / "function_vectors_heads" / "units" / f"{key}.json").read_text())
    tensors = load_file(run_dir / "function_vectors_heads" / "units" / record["tensors"]["file"])
    return record["result"]["effects"], tensors


def test_the_fv_command_saves_a_function_vector(tmp_path, capsys, one_thread):
    from tv_lens.cli.main import main

    out = tmp_path / "upper.safetensors"
    sizes = ["--model", "tiny-llama", "--k", "3", "--n-clean", "4", "--n-corrupted", "2", "--n-dev", "3",
             "--format", "arrow", "--queries", "all", "--threads", "1"]
    assert main(["fv", "--task", "to_upper", "--heads", "task", "--out", str(out), *sizes]) == 0
    printed = capsys.readouterr().out
    assert "top 3 heads by average indirect effect" in printed and "saved" in printed
    fv = TaskVector.load(out)
    assert fv.kind == FUNCTION_VECTOR and len(fv.heads) == 3 and fv.model == "tiny-llama"
    assert main(["fv", "--task", "to_upper", "--heads", "task", "--out", str(out), *sizes, "--k", "0"]) == 2
    assert "argument --k: must be at least 1, got 0" in capsys.readouterr().err  # before the model loads


def test_the_fv_command_ranks_the_universal_set_once_and_reuses_it(tmp_path, capsys, one_thread):
    from tv_lens.cli.main import main

    kept = tmp_path / "universal.json"
    args = ["fv", "--task", "to_upper", "--model", "tiny-llama", "--k", "3", "--n-clean", "4", "--n-corrupted", "2",
            "--n-dev", "3", "--format", "arrow", "--queries", "all", "--threads", "1", "--universal", str(kept),
            "--out", str(tmp_path / "upper.safetensors")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "ranking the heads over the 18 built-in tasks" in printed and f"wrote {kept}" in printed
    universal = UniversalHeads.from_dict(json.loads(kept.read_text()), 3)
    assert universal.tasks == list(BUILTIN_TASKS) and universal.k == 3
    saved = TaskVector.load(tmp_path / "upper.safetensors").heads
    assert [tuple(h[:2]) for h in saved] == [h[:2] for h in universal.heads]
    assert main(args) == 0
    assert f"universal head set from {kept} (18 tasks)" in capsys.readouterr().out
    kept.write_text("{}")
    assert main(args) == 2
    assert "is not a universal head set" in capsys.readouterr().err


def test_the_benchmark_prints_its_figures(monkeypatch, capsys, one_thread):
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "function_vectors.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--model", "tiny-llama", "--task", "to_upper", "--n-clean", "4",
                                      "--n-corrupted", "2", "--n-dev", "3", "--n-test", "3", "--format", "arrow",
                                      "--queries", "all"])
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert "by phase" in printed and "floor of this algorithm" in printed


def synthetic(task: str, effects: torch.Tensor, fingerprint: str = "f", fmt: str = "arrow") -> HeadEffects:
    """Head effects with the given indirect effects [prompt, layer, head] (and zero activations)."""
    n_layers, n_heads = effects.shape[1:]
    return HeadEffects(task=task, mean_z=torch.zeros(n_layers, n_heads, 2),
                       mean_share=torch.zeros(n_layers, n_heads, 4), resid_norm=torch.ones(n_layers), effects=effects,
                       clean_accuracy=Accuracy(1, 1), corrupted_accuracy=Accuracy(0, 1), icl_accuracy=Accuracy(1, 1),
                       corrupted_prob=0.1, settings={"prompt_format": fmt},
                       model={"model": "m", "fingerprint": fingerprint})


def test_the_universal_set_is_the_top_k_of_the_aie_averaged_over_tasks():
    a = torch.zeros(2, 3, 2)
    a[:, 0, 1], a[:, 1, 0], a[:, 2, 1] = 0.7, 0.5, 0.45
    b = torch.zeros(3, 3, 2)
    b[:, 2, 0], b[:, 1, 0], b[:, 2, 1] = 0.7, 0.5, 0.45
    effects = [synthetic("a", a), synthetic("b", b)]
    universal = universal_heads(effects, k=2)
    assert [h[:2] for h in universal.heads] == [(1, 0), (2, 1)]  # mean 0.5 and 0.45; each task's own top head 0.35
    assert [h[:2] for h in effects[0].top_heads(2)] == [(0, 1), (1, 0)]  # per-task ranking differs
    assert universal.heads[0][2] == pytest.approx(0.5) and universal.tasks == ["a", "b"]
    assert torch.allclose(torch.tensor(universal.aie), (a.mean(0) + b.mean(0)) / 2)
    assert [h[:2] for h in universal.top_heads(3)] == [(1, 0), (2, 1), (0, 1)]
    low, high = torch.tensor(universal.aie_low), torch.tensor(universal.aie_high)
    assert torch.all(low <= torch.tensor(universal.aie)) and torch.all(torch.tensor(universal.aie) <= high)
    assert UniversalHeads.from_dict(json.loads(json.dumps(universal.to_dict())), 3) == universal
    for bad, message in (([], "at least one task"), ([effects[0], effects[0]], "got a task twice"),
                         ([effects[0], synthetic("c", b, fingerprint="g")], "different models"),
                         ([effects[0], synthetic("c", b, fmt="qa")], "different prompt formats")):
        with pytest.raises(ValueError, match=message) as info:
            universal_heads(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="k must be between"):
        universal_heads(effects, k=7)


def test_the_universal_tasks_and_k_default_to_the_papers():
    assert tuple(UNIVERSAL_TASKS) == BUILTIN_TASKS and len(BUILTIN_TASKS) == 18
    assert FV_HEADS == 10


def test_a_function_vector_sums_the_universal_set_by_default_and_its_own_heads_as_an_option(tiny_llama, favourite,
                                                                                             one_thread, monkeypatch):
    real = items_module.icl_hits
    tasks = [favourite(), favourite("favourite_too", other="Zq")]
    settings = dict(fmt="arrow", n_clean=4, n_corrupted=2, n_dev=3)
    effects = [head_effects(tiny_llama, t, **settings) for t in tasks]
    universal = universal_heads(effects)  # k = 10 of tiny-llama's 12 heads
    by_default = function_vector(tiny_llama, tasks[0], universal_tasks=tasks, **settings)
    assert pairs(by_default.heads) == pairs(universal.heads) and len(by_default.heads) == 10
    own_means = sum(effects[0].mean_share[layer, head] for layer, head, _ in universal.heads)
    assert torch.allclose(by_default.vectors[0], own_means, atol=1e-5)  # this task's ā, the universal heads
    given = function_vector(tiny_llama, tasks[0], heads=universal, **settings)
    assert torch.equal(given.vectors, by_default.vectors) and given.layer == by_default.layer
    three = function_vector(tiny_llama, tasks[0], 3, heads=universal, **settings)
    assert pairs(three.heads) == pairs(universal.top_heads(3))
    own = function_vector(tiny_llama, tasks[0], 3, heads="task", **settings)
    assert pairs(own.heads) == pairs(effects[0].top_heads(3)) != pairs(three.heads)
    assert torch.allclose(own.vectors[0], sum(effects[0].mean_share[layer, head]
                                              for layer, head, _ in effects[0].top_heads(3)), atol=1e-5)
    screened: list[int] = []  # the number of queries each ICL screen looked at
    monkeypatch.setattr(items_module, "icl_hits", lambda *a, **kw: screened.append(len(a[2])) or real(*a, **kw))
    again = function_vector(tiny_llama, tasks[0], universal_tasks=tasks, **settings)
    assert torch.equal(again.vectors, by_default.vectors) and again.layer == by_default.layer
    in_function_vector, screened[:] = sum(screened), []
    for t in tasks:
        fv_items(tiny_llama, *task_in_format(tiny_llama, t, "arrow"), n_clean=4, n_corrupted=2, n_dev=3, n_test=0)
    assert in_function_vector == sum(screened)  # each task's validation queries screened once, this task's too
    other = UniversalHeads(**{**{f: getattr(universal, f) for f in ("tasks", "k", "model", "aie", "aie_low",
                                                                     "aie_high")}, "fingerprint": "elsewhere"})
    with pytest.raises(ValueError, match="ranked on another model"):
        function_vector(tiny_llama, tasks[0], heads=other, **settings)
    with pytest.raises(ValueError, match="heads must be 'universal', 'task' or a UniversalHeads"):
        function_vector(tiny_llama, tasks[0], heads="mine", **settings)


def pairs(heads) -> list[tuple[int, int]]:
    """(layer, head) of each head of a list of [layer, head, AIE]."""
    return [(int(h[0]), int(h[1])) for h in heads]


def test_head_effects_take_the_validation_queries_icl_answers_correctly_by_default(tiny_llama, favourite, one_thread):
    task = favourite()
    sizes = dict(n_clean=4, n_corrupted=3, n_dev=3)
    effects = head_effects(tiny_llama, task, fmt="arrow", **sizes)
    kept, fmt = task_in_format(tiny_llama, task, "arrow")
    items = fv_items(tiny_llama, kept, fmt, 0, n_test=0, **sizes)
    assert torch.equal(effects.effects, head_effects(tiny_llama, task, fmt="arrow", items=items, **sizes).effects)
    assert effects.settings["queries"] == "icl_correct" and effects.icl_accuracy == items.icl_valid
    every = head_effects(tiny_llama, task, fmt="arrow", queries="all", **sizes)
    assert not torch.equal(every.effects, effects.effects) and every.settings["queries"] == "all"


def test_the_analysis_options_name_the_protocols_variants():
    import argparse

    from analyses import function_vectors as analysis

    parser = argparse.ArgumentParser()
    analysis.add_settings_arguments(parser)
    assert analysis.settings_from_args(parser.parse_args([])) == analysis.FVSettings()
    variant = analysis.settings_from_args(parser.parse_args(
        ["--fv-queries", "all", "--fv-single-token-filter", "--fv-no-all-queries", "--fv-n-clean", "30"]))
    assert variant == analysis.FVSettings().but(queries="all", single_token_filter=True, compare_all_queries=False,
                                                n_clean=30)
