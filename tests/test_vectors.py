"""Task vectors as artifacts: save/load, provenance, compatibility, task-level θ, apply positions."""

import json
import os

import pytest
import torch

from tv_lens.patching import hooks
from tv_lens.patching.engine import Budget, Run, encode, left_pad, predict, query_positions
from tv_lens.patching.interventions import RESID_POST, Intervention, batch_hooks
from tv_lens.task_vectors.applying import apply
from tv_lens.task_vectors.learning import learn
from tv_lens.task_vectors.task_level import learn_task
from tv_lens.task_vectors.vector import SCHEMA_VERSION, TaskVector, VectorFileError, check_compatible
from tv_lens.tasks import get_task, sample_contexts

DEMOS = [("ab", "c"), ("de", "f"), ("gh", "i")]


@pytest.fixture
def theta(tiny_llama):
    return learn(tiny_llama, DEMOS, dummies=["jk", "lm"], layer=1, task="toy", seed=7)


def one_line_error(call, match):
    with pytest.raises(VectorFileError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_save_load_round_trip_keeps_tensor_and_metadata(tiny_llama, theta, tmp_path):
    path = theta.save(tmp_path / "sub" / "toy.safetensors")
    back = TaskVector.load(path)
    assert torch.equal(back.vectors, theta.vectors)
    assert back.metadata() == theta.metadata()
    meta = back.metadata()
    for key in ("model", "fingerprint", "hook", "layer", "prompt_format", "n_shots", "seed", "task",
                "n_contexts", "versions", "schema_version"):
        assert meta[key] not in (None, "", {}), key
    assert meta["model"] == "tiny-llama" and meta["n_shots"] == 3 and meta["seed"] == 7
    assert apply(tiny_llama, back, ["no", "pq"]) == apply(tiny_llama, theta, ["no", "pq"])
    assert [p.name for p in path.parent.iterdir()] == ["toy.safetensors"]


def test_the_metadata_is_json_in_the_safetensors_header(theta, tmp_path):
    from safetensors import safe_open

    path = theta.save(tmp_path / "toy.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["tv_lens"])
        assert list(f.keys()) == ["vectors"]
    assert meta["schema_version"] == SCHEMA_VERSION and meta["task"] == "toy"


def test_missing_damaged_and_foreign_files_are_one_line_errors(theta, tmp_path):
    from safetensors.torch import save_file

    one_line_error(lambda: TaskVector.load(tmp_path / "nope.safetensors"), "no task vector file")
    data = theta.save(tmp_path / "good.safetensors").read_bytes()
    cases = {"truncated": data[: len(data) // 2], "header_only": data[:6], "empty": b"",
             "json": json.dumps({"vectors": [1, 2]}).encode(), "random": os.urandom(256)}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        one_line_error(lambda: TaskVector.load(tmp_path / name), "not a readable task vector file")
    save_file({"weights": torch.zeros(2, 3)}, str(tmp_path / "foreign.safetensors"))
    one_line_error(lambda: TaskVector.load(tmp_path / "foreign.safetensors"), "without tv_lens metadata")
    save_file({"vectors": torch.zeros(2, 3)}, str(tmp_path / "bad.safetensors"), metadata={"tv_lens": "{"})
    one_line_error(lambda: TaskVector.load(tmp_path / "bad.safetensors"), "damaged tv_lens metadata")


def test_a_newer_schema_version_is_refused(theta, tmp_path):
    theta.schema_version = SCHEMA_VERSION + 1
    path = theta.save(tmp_path / "future.safetensors")
    one_line_error(lambda: TaskVector.load(path), "newer than this tv_lens reads.*upgrade")


def test_altered_metadata_is_refused(theta, tmp_path):
    theta.layer = 99
    one_line_error(lambda: TaskVector.load(theta.save(tmp_path / "a.safetensors")), "not a layer of its 3")


def test_another_d_model_is_always_refused(tiny_llama, theta):
    narrow = TaskVector(vectors=torch.zeros(theta.n_layers, 32), layer=0, model="elsewhere")
    for transfer in (False, True):
        with pytest.raises(ValueError, match="d_model 32 but the model has 64"):
            check_compatible(tiny_llama, narrow, allow_transfer=transfer)


def test_another_fingerprint_is_refused_unless_transfer_is_allowed(tiny_gemma, theta):
    with pytest.raises(ValueError, match="allow_transfer"):
        apply(tiny_gemma, theta, ["ab"])
    assert len(apply(tiny_gemma, theta, ["ab"], allow_transfer=True)) == 1


def test_task_level_theta_is_the_mean_over_k_contexts(tiny_llama):
    from tv_lens.task_vectors.learning import learn_items
    from tv_lens.tasks.prompts import PromptFormat

    task = get_task("next_letter")
    theta = learn_task(tiny_llama, task, k=3, seed=2, n_dev=4)
    contexts = sample_contexts(task, 3, 2)
    per_context, _ = learn_items(tiny_llama, contexts, PromptFormat())
    assert torch.allclose(theta.vectors, torch.stack(per_context).mean(0), atol=1e-6)
    assert theta.n_contexts == 3 and theta.task == "next_letter" and theta.n_shots == 5
    assert len(theta.dev_accuracy) == tiny_llama.cfg.n_layers
    assert theta.dev_accuracy[theta.layer] == max(theta.dev_accuracy)
    assert learn_task(tiny_llama, task, k=3, seed=2, layer=2).layer == 2


def test_contexts_avoid_excluded_inputs_and_small_pools_are_clear_errors():
    task = get_task("to_upper")
    held_out = set(task.inputs[:10])
    for ctx in sample_contexts(task, 8, 0, exclude=held_out):
        assert not held_out & ({x for x, _ in ctx.demos} | set(ctx.dummies))
    with pytest.raises(ValueError, match="use fewer shots"):
        sample_contexts(task, 2, 0, exclude=task.inputs[:20])


def test_add_with_alpha_zero_is_no_patch_at_either_position_choice(tiny_llama, theta):
    tokens = encode(tiny_llama, ["example:ab->", "example:abcdef->"])
    plain = predict(tiny_llama, [Run(t) for t in tokens], logits=True)
    for positions in ("last", "all"):
        runs = [Run(t, (Intervention(1, theta.at(1), mode="add", strength=0.0, positions=positions),)) for t in tokens]
        for a, b in zip(predict(tiny_llama, runs, logits=True), plain):
            assert torch.allclose(a.logits, b.logits, atol=1e-5)


def test_all_positions_edits_every_query_token_after_bos_and_nothing_else(tiny_llama, theta):
    seqs = encode(tiny_llama, ["example:ab->", "x->"])
    tokens, mask = left_pad(tiny_llama, seqs)
    query = query_positions(tiny_llama, tokens, mask)
    assert query.sum(1).tolist() == [len(s) - 1 for s in seqs]
    assert not query[1, : tokens.shape[1] - len(seqs[1]) + 1].any()
    name, vector = RESID_POST.format(layer=1), theta.at(1)
    for mode, alpha in (("replace", 1.0), ("add", 2.0)):
        store: dict = {}
        with hooks.capturing(tiny_llama, [name]) as plain:
            tiny_llama(tokens, attention_mask=mask)
        edits = [[Intervention(1, vector, mode=mode, strength=alpha, positions="all")]] * 2
        with hooks.hooked(tiny_llama, batch_hooks(edits, mask.bool(), query) + hooks.capture_hooks([name], store)):
            tiny_llama(tokens, attention_mask=mask)
        expected = vector if mode == "replace" else plain[name] + alpha * vector
        edited = torch.where(query[..., None], expected.expand_as(plain[name]), plain[name])
        assert torch.allclose(store[name], edited, atol=1e-5)


def test_replace_at_all_positions_differs_from_last_only_and_is_padding_correct(tiny_llama, theta):
    tokens = encode(tiny_llama, ["example:ab->", "example:abcdef->", "x->"])
    runs = {p: [Run(t, (Intervention(0, theta.at(0), positions=p),)) for t in tokens] for p in ("last", "all")}
    last = predict(tiny_llama, runs["last"], logits=True)
    every = predict(tiny_llama, runs["all"], logits=True)
    alone = predict(tiny_llama, runs["all"], logits=True, budget=Budget(tokens=1, rows=1))
    for a, b, c in zip(every, last, alone):
        assert not torch.allclose(a.logits, b.logits, atol=1e-3)
        assert torch.allclose(a.logits, c.logits, atol=1e-5)
    at_layer_1 = Run(tokens[1], (Intervention(1, theta.at(1), positions="all"),))
    grouped = predict(tiny_llama, [runs["all"][1:2] + [at_layer_1]], logits=True)[0]
    (single,) = predict(tiny_llama, [at_layer_1], logits=True)
    assert torch.allclose(grouped[0].logits, every[1].logits, atol=1e-5)
    assert torch.allclose(grouped[1].logits, single.logits, atol=1e-5)


def test_unknown_position_choice_is_refused(theta):
    with pytest.raises(ValueError, match="'last', 'all'"):
        Intervention(0, theta.at(0), positions="first")


def test_a_saved_vector_has_the_permissions_the_umask_gives(theta, tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        path = theta.save(tmp_path / "v.safetensors")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["v.safetensors"]
