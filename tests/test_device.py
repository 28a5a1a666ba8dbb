"""The whole pipeline on an accelerator: every tensor follows the model, and results match the CPU.

Runs on CUDA when there is one (skipped otherwise); `TV_LENS_TEST_DEVICE=cpu` runs the same checks
against a second CPU copy, which is how this file's own logic is tested on machines without a GPU.
"""

import os

import pytest
import torch
from test_core import check_batched_equals_unbatched, check_identity, max_rel, shift_task

from tv_lens.analysis.lens import top_tokens
from tv_lens.models.loading import load_model
from tv_lens.models.provenance import fingerprint
from tv_lens.task_vectors.applying import apply
from tv_lens.task_vectors.evaluation import evaluate
from tv_lens.task_vectors.generation import generate
from tv_lens.task_vectors.learning import learn
from tv_lens.task_vectors.serving import TaskVectorSolver
from tv_lens.task_vectors.task_level import learn_task
from tv_lens.task_vectors.vector import TaskVector

DEVICE = os.environ.get("TV_LENS_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device")
DEMOS = [("ab", "c"), ("de", "f"), ("gh", "i")]


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gemma"])
def pair(request):
    """The same tiny model on the CPU and on DEVICE."""
    return load_model(request.param, device="cpu"), load_model(request.param, device=DEVICE)


def test_the_model_and_its_config_are_on_the_device(pair):
    _, model = pair
    assert torch.device(model.cfg.device).type == torch.device(DEVICE).type
    assert all(p.device.type == torch.device(DEVICE).type for p in model.parameters())


def test_batching_identity_and_kv_reuse_hold_on_the_device(pair):
    _, model = pair
    check_batched_equals_unbatched(model)
    check_identity(model)


def test_learn_apply_and_generate_match_the_cpu(pair):
    cpu, dev = pair
    assert fingerprint(cpu) == fingerprint(dev)
    thetas = [learn(m, DEMOS, dummies=["jk", "lm"], layer=1) for m in pair]
    assert thetas[1].vectors.device.type == "cpu"
    assert max_rel(thetas[1].vectors, thetas[0].vectors) < 1e-4
    queries = ["no", "pq", "r"]
    assert apply(dev, thetas[1], queries) == apply(cpu, thetas[0], queries)
    assert apply(dev, thetas[1], queries, mode="add", strength=0.5, positions="all") == \
        apply(cpu, thetas[0], queries, mode="add", strength=0.5, positions="all")
    assert generate(dev, thetas[1], queries, max_new_tokens=4) == generate(cpu, thetas[0], queries, max_new_tokens=4)
    assert top_tokens(dev, thetas[1].at(1), k=5).ids == top_tokens(cpu, thetas[0].at(1), k=5).ids


def test_evaluate_matches_the_cpu(pair):
    kwargs = dict(n_baseline=8, n_dev=6, n_test=6, n_shots=3, seed=2)
    on_cpu, on_dev = (evaluate(m, shift_task(), **kwargs) for m in pair)
    assert (on_dev.baseline, on_dev.icl, on_dev.tv) == (on_cpu.baseline, on_cpu.icl, on_cpu.tv)
    assert on_dev.dev_accuracy_by_layer == on_cpu.dev_accuracy_by_layer
    assert [r.tv for r in on_dev.test_items] == [r.tv for r in on_cpu.test_items]


def test_a_vector_saved_from_the_device_serves_on_the_cpu(pair, tmp_path):
    cpu, dev = pair
    theta = learn_task(dev, shift_task(), k=4, layer=1, seed=0)
    theta.save(tmp_path / "shift.safetensors")
    loaded = TaskVector.load(tmp_path / "shift.safetensors")
    assert torch.equal(loaded.vectors, theta.vectors)
    queries = ["ab1", "cd2", "ef3"]
    assert TaskVectorSolver(cpu, loaded)(queries) == TaskVectorSolver(dev, theta)(queries)


def test_a_patch_whose_vector_is_on_the_device_gives_the_cpu_result(pair):
    from tv_lens.patching.engine import Run, encode, predict
    from tv_lens.patching.interventions import Intervention

    cpu, dev = pair
    vector = torch.randn(cpu.cfg.d_model, generator=torch.Generator().manual_seed(0))
    tokens = encode(cpu, ["example:ab->"])[0]
    for mode in ("replace", "add"):
        on_cpu = predict(cpu, [Run(tokens, (Intervention(1, vector, mode=mode, strength=0.5),))], logits=True)[0]
        on_dev = predict(dev, [Run(tokens, (Intervention(1, vector.to(DEVICE), mode=mode, strength=0.5),))],
                         logits=True)[0]
        assert max_rel(on_dev.logits, on_cpu.logits) < 1e-4
