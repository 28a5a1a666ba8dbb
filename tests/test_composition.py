"""The composition experiment end to end on the tiny model: results validate and match the vectors they
were composed from, the six tasks share one split, interrupted runs resume, and it runs from reproduce
and its command line."""

import pytest
import torch

from analyses import composition
from tv_lens.patching.engine import Run, decode, encode, predict
from tv_lens.patching.interventions import Intervention
from tv_lens.report.tables import as_text
from tv_lens.runs.records import results_from_dict
from tv_lens.runs.store import Store, load_results

# random weights answer almost no query right: every query, not the ICL-correct ones (tests/test_fv_prompts.py)
SMALL = composition.CompositionSettings(format="arrow", queries="all").but(n_shots=3, n_clean=4, n_corrupted=2,
                                                                           n_dev=4, n_test=6, k=3, tv_contexts=2)
QUIET = dict(progress=lambda message: None)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def done(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("composition")
    return out, composition.run(tiny_llama, out, SMALL, **QUIET)


def test_the_six_tasks_share_their_inputs_and_their_split(tiny_llama):
    tasks, fmt = composition.shared_tasks(tiny_llama, "arrow")
    assert list(tasks) == list(composition.TASKS)
    assert len({tuple(t.inputs) for t in tasks.values()}) == 1
    splits = {name: composition.items_of(tiny_llama, task, fmt, SMALL, 0) for name, task in tasks.items()}
    assert len({tuple(s.test_inputs) for s in splits.values()}) == 1
    test_inputs = set(splits["list_first"].test_inputs)
    for s in splits.values():
        seen = {x for item in s.clean + s.corrupted + s.dev for x, _ in item.demos} | {i.query for i in s.dev}
        assert not seen & test_inputs
    assert all("z" not in (x[0], x[-1]) for x in tasks["list_first"].inputs)  # z has no next letter


def test_results_validate_and_hold_every_composition(done, tiny_llama):
    out, outcome = done
    results = load_results(out / "composition")
    assert results == outcome.results
    assert [r.target for r in results.compositions] == [t for t, _ in composition.COMPOSITIONS]
    assert [t.task for t in results.tasks] == list(composition.TASKS)
    first = results.compositions[0]
    assert first.theta_composed.recipe == "tv:list_last + tv:list_first_upper - tv:list_first"
    assert first.fv_composed.recipe == "fv:list_last + fv:list_first_upper - fv:list_first"
    assert first.theta.recipe == "tv:list_last_upper" and first.n_test == 6
    assert len(first.theta_composed.dev_by_layer) == tiny_llama.cfg.n_layers
    text = as_text(results)
    assert "list_last_upper" in text and "mean (4 tasks)" in text and "fv:list_last + fv:list_first_upper" in text
    assert sorted(outcome.computed) == sorted([f"vectors/{t}" for t in composition.TASKS]
                                              + [t for t, _ in composition.COMPOSITIONS])


def test_composed_accuracies_follow_from_the_saved_component_vectors(done, tiny_llama):
    out, outcome = done
    store = Store.open(out / "composition", "vectors", tiny_llama, SMALL.record(), 0, print)
    tasks, fmt = composition.shared_tasks(tiny_llama, "arrow")
    saved = {name: store.load(name, ["theta", "fv"], tasks[name].digest).tensors for name in composition.TASKS}
    for run, (target, (a, b, c)) in zip(outcome.results.compositions, composition.COMPOSITIONS):
        for kind, mode in (("theta", "replace"), ("fv", "add")):
            by_hand = saved[a][kind] + saved[b][kind] - saved[c][kind]
            components = run.components[kind]
            assert [t["name"].split(":")[1] for t in components] == [a, b, c]
            assert [t["coefficient"] for t in components] == [1.0, 1.0, -1.0]
            composed = getattr(run, f"{kind}_composed")
            items = composition.items_of(tiny_llama, tasks[target], fmt, SMALL, 0).test
            prompts = encode(tiny_llama, [fmt.zero_shot_prompt(i) for i in items])
            edit = Intervention(composed.layer, by_hand[composed.layer], mode=mode)
            predictions = decode(tiny_llama, [p.token for p in predict(tiny_llama, [Run(t, (edit,)) for t in prompts])])
            correct = sum(tasks[target].score(p, i.query) for p, i in zip(predictions, items))
            assert composed.test.correct == correct and composed.test.total == len(items)
            own = torch.nn.functional.cosine_similarity(saved[target][kind][getattr(run, kind).layer],
                                                        by_hand[getattr(run, kind).layer], dim=0)
            assert run.cosine[kind] == pytest.approx(float(own), abs=1e-5)


@pytest.mark.slow  # four more runs; the store's reuse and resuming are tested fast in test_store.py
def test_a_rerun_reuses_everything_and_an_interrupted_one_resumes(done, tiny_llama, tmp_path, monkeypatch):
    out, _ = done
    again = composition.run(tiny_llama, out, SMALL, **QUIET)
    assert again.computed == [] and len(again.reused) == 6 + 4
    real, calls = composition.composition_result, []

    def fails_on_the_second(model, target, *args, **kwargs):
        calls.append(target.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(model, target, *args, **kwargs)

    monkeypatch.setattr(composition, "composition_result", fails_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        composition.run(tiny_llama, tmp_path, SMALL, **QUIET)
    monkeypatch.setattr(composition, "composition_result", real)
    resumed = composition.run(tiny_llama, tmp_path, SMALL, **QUIET)
    assert resumed.computed == [t for t, _ in composition.COMPOSITIONS[1:]]
    assert len(resumed.reused) == 6 + 1
    changed = composition.run(tiny_llama, tmp_path, SMALL.but(n_test=5), **QUIET)
    assert len(changed.computed) == 6 + 4  # other sizes: every unit again


def test_a_shard_computes_only_its_share_of_the_vectors(tiny_llama, tmp_path):
    from tv_lens.runs.store import Shard

    part = composition.run(tiny_llama, tmp_path, SMALL, shard=Shard(1, 3), **QUIET)
    assert part.results is None and part.computed == ["vectors/list_first", "vectors/list_last"]
    assert not (tmp_path / "composition" / "results.json").exists()


def test_unknown_format_is_a_one_line_error(tiny_llama, tmp_path):
    with pytest.raises(ValueError, match="unknown prompt format 'chat'"):
        composition.run(tiny_llama, tmp_path, SMALL.but(format="chat"), **QUIET)


def test_composition_runs_from_its_command_line(tmp_path, capsys):
    argv = ["--model", "tiny-llama", "--out", str(tmp_path), "--format", "arrow", "--n-shots", "3", "--n-dev", "3",
            "--n-test", "4", "--n-clean", "3", "--n-corrupted", "2", "--k", "2", "--tv-contexts", "2"]
    assert composition.main(argv) == 2  # the FV paper's queries: random weights answer no validation query right
    assert "the FV paper's ICL-correct filter leaves no query" in capsys.readouterr().err
    assert composition.main(argv + ["--queries", "all"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'composition' / 'results.json'}" in out and "θ composed" in out
    results_from_dict(load_results(tmp_path / "composition").to_dict())
