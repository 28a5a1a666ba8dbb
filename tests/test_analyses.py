"""Each analysis end to end on the tiny model: results validate, interrupted runs resume without
redoing finished work, changed settings redo it."""

import json
from dataclasses import asdict

import pytest
import torch

from analyses import (
    clusters,
    composition,
    conflicting_tasks,
    function_vectors,
    layer_sweep,
    main_table,
    reproduce,
    top_tokens,
)
from tv_lens.report.tables import as_text
from tv_lens.runs.records import SCHEMA_VERSION, results_from_dict
from tv_lens.runs.store import ResultsError, Store, load_results
from tv_lens.settings import Settings
from tv_lens.task_vectors.learning import learn_items
from tv_lens.tasks import get_task, sample_splits
from tv_lens.tasks.prompts import PromptFormat

TASKS = ["next_letter", "to_upper", "list_last", "list_first"]
SMALL = Settings(n_baseline=6, n_dev=6, n_test=6)
# random weights answer almost no query right: every query, not the ICL-correct ones (tests/test_fv_prompts.py)
SMALL_FV = function_vectors.FVSettings().but(n_clean=4, n_corrupted=2, n_dev=3, n_test=3, k=3, tv_contexts=2,
                                             queries="all")
SMALL_PROTOCOL = reproduce.Protocol(main=SMALL, conflict=conflicting_tasks.ConflictSettings(n_items=6),
                                    fv=SMALL_FV, fv_formats=("arrow",),
                                    composition=composition.CompositionSettings(format="arrow", queries="all").but(
                                        n_shots=3, n_clean=4, n_corrupted=2, n_dev=3, n_test=3, k=3, tv_contexts=2),
                                    cluster=clusters.ClusterSettings(n_per_task=6), k=5)
QUIET = dict(progress=lambda message: None)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def counted(monkeypatch):
    """The tasks for which the main table really ran `evaluate` (not reused)."""
    ran = []
    real = main_table.evaluate

    def evaluate(model, task, **kwargs):
        ran.append(task.name)
        return real(model, task, **kwargs)

    monkeypatch.setattr(main_table, "evaluate", evaluate)
    return ran


def test_main_table_end_to_end_and_rerun_reuses_everything(tiny_llama, tmp_path, counted):
    first = main_table.run(tiny_llama, tmp_path, TASKS[:2], SMALL, **QUIET)
    assert counted == TASKS[:2] and first.computed == TASKS[:2] and first.reused == []
    saved = load_results(tmp_path / "main_table")
    assert saved.schema_version == SCHEMA_VERSION and saved.analysis == "main_table"
    assert saved.model.model == "tiny-llama" and saved.settings["n_test"] == 6
    assert set(saved.summary.categories) == {"algorithmic"}
    assert [len(t.hits.tv) for t in saved.tasks] == [6, 6]
    again = main_table.run(tiny_llama, tmp_path, TASKS[:2], SMALL, **QUIET)
    assert counted == TASKS[:2] and again.computed == [] and again.reused == TASKS[:2]
    assert again.results.tasks == first.results.tasks
    assert "mean" in as_text(again.results)


def test_interrupted_main_table_resumes_where_it_stopped(tiny_llama, tmp_path, monkeypatch, counted):
    real = main_table.task_result

    def crash_on_third(model, task, settings, seed):
        if task.name == TASKS[2]:
            raise KeyboardInterrupt
        return real(model, task, settings, seed)

    monkeypatch.setattr(main_table, "task_result", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        main_table.run(tiny_llama, tmp_path, TASKS, SMALL, **QUIET)
    assert counted == TASKS[:2]
    assert not (tmp_path / "main_table" / "results.json").exists()
    monkeypatch.setattr(main_table, "task_result", real)
    resumed = main_table.run(tiny_llama, tmp_path, TASKS, SMALL, **QUIET)
    assert resumed.reused == TASKS[:2] and resumed.computed == TASKS[2:]
    assert counted == TASKS


def test_deleted_unit_and_changed_settings_are_redone(tiny_llama, tmp_path, counted):
    main_table.run(tiny_llama, tmp_path, TASKS[:2], SMALL, **QUIET)
    (tmp_path / "main_table" / "units" / f"{TASKS[1]}.json").unlink()
    redo = main_table.run(tiny_llama, tmp_path, TASKS[:2], SMALL, **QUIET)
    assert redo.computed == [TASKS[1]] and redo.reused == [TASKS[0]]
    other = Settings(n_baseline=6, n_dev=6, n_test=7)
    changed = main_table.run(tiny_llama, tmp_path, TASKS[:2], other, **QUIET)
    assert changed.computed == TASKS[:2] and changed.reused == []


def test_units_of_another_model_are_not_reused(tiny_llama, tiny_gemma, tmp_path):
    llama = Store.open(tmp_path, "a", tiny_llama, {"n": 1}, 0)
    llama.save("t", {"x": 1})
    assert Store.open(tmp_path, "a", tiny_llama, {"n": 1}, 0).load("t").result == {"x": 1}
    assert Store.open(tmp_path, "a", tiny_gemma, {"n": 1}, 0).load("t") is None
    assert Store.open(tmp_path, "a", tiny_llama, {"n": 1}, 1).load("t") is None


def test_layer_sweep_reads_the_main_table_without_recomputing(tiny_llama, tmp_path, counted):
    main = main_table.run(tiny_llama, tmp_path, TASKS[:2], SMALL, **QUIET)
    sweep = layer_sweep.run(tiny_llama, tmp_path, TASKS[:2], SMALL, **QUIET)
    assert counted == TASKS[:2]
    saved = load_results(tmp_path / "layer_sweep")
    assert saved.n_layers == tiny_llama.cfg.n_layers == len(saved.mean)
    curves = [[a.value for a in t.dev_accuracy_by_layer] for t in main.results.tasks]
    assert [t.accuracy for t in sweep.results.tasks] == curves
    assert saved.mean == pytest.approx([sum(c) / len(c) for c in zip(*curves)])


def test_conflicting_pair_queries_are_valid_for_both_tasks():
    a, b = get_task("next_letter"), get_task("to_upper")
    items_a, items_b = conflicting_tasks.pair_items(a, b, conflicting_tasks.ConflictSettings(n_items=30), seed=0)
    assert len(items_a) == len(items_b) == 30
    for ia, ib in zip(items_a, items_b):
        assert ia.query == ib.query and ia.query in a.inputs and ia.query in b.inputs
        assert ia.answers == a.answers(ia.query) and ib.answers == b.answers(ib.query)
        assert len(ia.demos) == len(ib.demos) == 4 and len(ib.dummies) == 2
        assert ia.query not in [x for x, _ in ia.demos] + [x for x, _ in ib.demos] + list(ib.dummies)
        assert all(y == a.canonical(x) for x, y in ia.demos) and all(y == b.canonical(x) for x, y in ib.demos)
    with pytest.raises(ValueError, match="share no input"):
        conflicting_tasks.pair_items(get_task("to_lower"), b, conflicting_tasks.ConflictSettings(), seed=0)


def test_conflicting_tasks_at_best_layer_of_b_and_at_a_given_layer(tiny_llama, tmp_path, counted):
    pairs = [("next_letter", "to_upper"), ("list_last", "list_first")]
    settings = conflicting_tasks.ConflictSettings(n_items=6)
    outcome = conflicting_tasks.run(tiny_llama, tmp_path, pairs, settings, main_settings=SMALL, **QUIET)
    assert counted == ["to_upper", "list_first"]
    best = main_table.best_layers(tiny_llama, tmp_path, [get_task(b) for _, b in pairs], SMALL, **QUIET)
    assert counted == ["to_upper", "list_first"]
    saved = load_results(tmp_path / "conflicting_tasks")
    assert [(p.task_a, p.task_b) for p in saved.pairs] == pairs
    assert [p.layer for p in saved.pairs] == [best[b] for _, b in pairs]
    assert all(p.n_items == len(p.items) == 6 for p in saved.pairs)
    assert outcome.computed == ([f"main_table/{b}" for _, b in pairs]  # computed here for B's best layers
                                + [f"{a}__{b}__layer{best[b]}" for a, b in pairs])
    given = conflicting_tasks.run(tiny_llama, tmp_path, pairs[:1], settings, layer=1, **QUIET)
    assert given.results.pairs[0].layer == 1 and given.computed == ["next_letter__to_upper__layer1"]
    again = conflicting_tasks.run(tiny_llama, tmp_path, pairs[:1], settings, layer=1, **QUIET)
    assert again.computed == [] and again.reused == ["next_letter__to_upper__layer1"]
    assert "next_letter → to_upper" in as_text(again.results)


def test_top_tokens_project_the_main_tables_mean_theta_without_recomputing(tiny_llama, tmp_path, counted):
    outcome = top_tokens.run(tiny_llama, tmp_path, TASKS[:3], SMALL, k=5, **QUIET)
    assert counted == TASKS[:3]
    saved, main = load_results(tmp_path / "top_tokens"), main_table.run(tiny_llama, tmp_path, TASKS[:3], SMALL,
                                                                         **QUIET).results
    assert counted == TASKS[:3]
    assert saved.k == 5
    for row, result in zip(saved.tasks, main.tasks):
        assert len(row.raw.tokens) == len(row.centred.tokens) == 5
        assert row.n_items == SMALL.n_test and row.layer == result.best_layer
    assert len({tuple(r.centred.ids) for r in saved.tasks}) > 1
    task = get_task(TASKS[0]).filtered(tiny_llama.tokenizer)
    splits = sample_splits(task, seed=0, **asdict(SMALL))
    thetas, _ = learn_items(tiny_llama, splits.test, PromptFormat.for_task(task))
    units, _ = main_table.task_results(tiny_llama, tmp_path, [get_task(TASKS[0])], SMALL, **QUIET)
    stored = units[0].tensors[main_table.MEAN_THETA]
    assert torch.allclose(stored, torch.stack(thetas).mean(0), rtol=1e-4, atol=1e-6)
    again = top_tokens.run(tiny_llama, tmp_path, TASKS[:3], SMALL, k=5, **QUIET)
    assert counted == TASKS[:3] and again.results.tasks == outcome.results.tasks


def test_a_unit_missing_the_tensors_asked_for_is_redone(tiny_llama, tmp_path):
    store = Store.open(tmp_path, "a", tiny_llama, {}, 0)
    store.save("old", {"x": 1})
    store.save("new", {"x": 2}, {"theta": torch.ones(3)})
    assert store.load("old").result == {"x": 1} and store.load("old", needs=["theta"]) is None
    new = store.load("new", needs=["theta"])
    assert new.result == {"x": 2} and torch.equal(new.tensors["theta"], torch.ones(3))
    assert store.load("new", needs=["other"]) is None
    next((tmp_path / "a" / "units").glob("new~*.safetensors")).unlink()
    assert store.load("new", needs=["theta"]) is None


def test_clusters_at_the_median_best_layer_and_another_layer_without_new_vectors(tiny_llama, tmp_path):
    outcome = clusters.run(tiny_llama, tmp_path, TASKS[:3], clusters.ClusterSettings(n_per_task=6),
                           main_settings=SMALL, **QUIET)
    saved = load_results(tmp_path / "clusters")
    best = main_table.best_layers(tiny_llama, tmp_path, [get_task(t) for t in TASKS[:3]], SMALL, **QUIET)
    assert saved.layer == sorted(best.values())[1]
    assert len(saved.points) == 18 and saved.stats.n_tasks == 3
    assert {p.task for p in saved.points} == set(TASKS[:3])
    assert outcome.computed == TASKS[:3]
    other = (saved.layer + 1) % tiny_llama.cfg.n_layers
    other_layer = clusters.run(tiny_llama, tmp_path, TASKS[:3], clusters.ClusterSettings(n_per_task=6),
                               layer=other, **QUIET)
    assert other_layer.computed == [] and other_layer.results.layer == other
    assert other_layer.results.stats != outcome.results.stats


@pytest.mark.slow  # fast twins: test_figures.py's run of every analysis, the quick run below
def test_reproduce_runs_every_analysis(tiny_llama, tmp_path):
    outcomes = reproduce.reproduce(tiny_llama, tmp_path, TASKS, SMALL_PROTOCOL, **QUIET)
    assert list(outcomes) == ["main_table", "layer_sweep", "conflicting_tasks", "top_tokens", "clusters",
                              "function_vectors", "composition"]
    for name in outcomes:
        results_from_dict(json.loads((tmp_path / name / "results.json").read_text()))
    assert len(outcomes["conflicting_tasks"].results.pairs) == 2
    report = reproduce.format_report(outcomes)
    assert "== main table ==" in report and "== clusters ==" in report and "== function vectors ==" in report
    assert "== composition ==" in report
    again = reproduce.reproduce(tiny_llama, tmp_path, TASKS, SMALL_PROTOCOL, **QUIET)
    assert all(o.computed == [] for o in again.values())


def test_reproduce_runs_only_the_experiments_asked_for(tiny_llama, tmp_path):
    outcomes = reproduce.reproduce(tiny_llama, tmp_path, TASKS[:2], SMALL_PROTOCOL, experiments=["function_vectors"],
                                   **QUIET)
    assert list(outcomes) == ["function_vectors"] and not (tmp_path / "main_table").exists()
    with pytest.raises(ValueError, match="unknown experiments"):
        reproduce.reproduce(tiny_llama, tmp_path, TASKS[:2], SMALL_PROTOCOL, experiments=["fv"], **QUIET)


def test_cli_reproduce_quick_ends_with_the_report(tmp_path, capsys):
    from tv_lens.cli.main import main

    assert main(["reproduce", "--model", "tiny-llama", "--quick", "--tasks", "next_letter", "to_upper",
                 "--out", str(tmp_path), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "next_letter → to_upper" in out and "all tasks" in out
    assert (tmp_path / "clusters" / "results.json").exists()
    report = tmp_path / "figures" / "report.html"
    assert out.strip().splitlines()[-1] == f"open {report.resolve().as_uri()}"
    assert "Plotly.newPlot" in report.read_text()


def test_cli_reproduce_without_figures(tmp_path, capsys):
    from tv_lens.cli.main import main

    assert main(["reproduce", "--model", "tiny-llama", "--quick", "--tasks", "next_letter", "--out", str(tmp_path),
                 "--no-figures"]) == 0
    assert (tmp_path / "main_table" / "results.json").exists() and not (tmp_path / "figures").exists()
    assert "report.html" not in capsys.readouterr().out


def test_schema_validation_errors(tiny_llama, tmp_path):
    main_table.run(tiny_llama, tmp_path, TASKS[:1], SMALL, **QUIET)
    good = json.loads((tmp_path / "main_table" / "results.json").read_text())
    results_from_dict(good)
    missing = {**good, "summary": {"overall": good["summary"]["overall"]}}
    with pytest.raises(ResultsError, match="summary: missing field 'categories'"):
        results_from_dict(missing)
    wrong = json.loads(json.dumps(good))
    wrong["tasks"][0]["best_layer"] = "3"
    with pytest.raises(ResultsError, match=r"tasks\[0\].best_layer: expected an integer"):
        results_from_dict(wrong)
    with pytest.raises(ResultsError, match="newer"):
        results_from_dict({**good, "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(ResultsError, match="unknown analysis"):
        results_from_dict({**good, "analysis": "nope"})
    with pytest.raises(ResultsError, match="does not exist"):
        load_results(tmp_path / "nothing")


SIZES = ["--n-baseline", "4", "--n-dev", "4", "--n-test", "4"]


@pytest.mark.parametrize("module, args", [
    (main_table, ["--tasks", "next_letter", "to_upper"]),
    (layer_sweep, ["--tasks", "next_letter", "to_upper"]),
    (top_tokens, ["--tasks", "next_letter", "to_upper", "-k", "3"]),
    (conflicting_tasks, ["--pairs", "next_letter:to_upper", "--n-items", "4"]),
    (clusters, ["--tasks", "next_letter", "to_upper", "--n-per-task", "4"]),
])
def test_each_analysis_runs_from_its_command_line(module, args, tmp_path, capsys):
    assert module.main(["--model", "tiny-llama", "--out", str(tmp_path), *SIZES, *args]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / module.ANALYSIS / 'results.json'}" in out
    load_results(tmp_path / module.ANALYSIS)


def test_a_task_whose_contents_changed_is_redone_not_reused(tiny_llama, tmp_path, counted):
    from test_core import shift_task

    from tv_lens.tasks import Task

    task = shift_task()
    main_table.run(tiny_llama, tmp_path, [task], SMALL, **QUIET)
    pairs = {x: ys[0] for x, ys in task.pairs.items()}
    changed = Task(name=task.name, category=task.category, description="", pairs={**pairs, task.inputs[0]: "z"})
    assert changed.digest != task.digest
    assert Task(name=task.name, category=task.category, description="other words", pairs=pairs).digest == task.digest
    redone = main_table.run(tiny_llama, tmp_path, [changed], SMALL, **QUIET)
    assert redone.computed == [task.name] and counted == [task.name, task.name]
    assert main_table.run(tiny_llama, tmp_path, [changed], SMALL, **QUIET).reused == [task.name]


def test_clusters_use_the_median_best_layer():
    assert clusters.common_layer({"a": 0, "b": 2, "c": 1}) == 1
    assert clusters.common_layer({"a": 3, "b": 1}) == 1
