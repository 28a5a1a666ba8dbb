"""`TaskVectorSolver`: a stored vector answering queries without demonstrations."""

import pytest

from tv_lens.models.provenance import model_spec
from tv_lens.task_vectors.applying import apply
from tv_lens.task_vectors.generation import generate
from tv_lens.task_vectors.learning import learn
from tv_lens.task_vectors.serving import TaskVectorSolver


@pytest.fixture
def theta(tiny_llama):
    return learn(tiny_llama, [("ab", "c"), ("de", "f")], dummies=["gh", "ij"], layer=1, task="toy")


def test_solver_answers_with_theta_patched_at_its_layer(tiny_llama, theta):
    from tv_lens.patching.engine import Budget, Run, decode, encode, predict
    from tv_lens.patching.interventions import Intervention
    from tv_lens.tasks.prompts import PromptFormat

    queries = ["kl", "m", "nop", "qr", "st"]
    prompts = encode(tiny_llama, [PromptFormat().query(q) for q in queries])
    runs = [Run(t, (Intervention(1, theta.at(1)),)) for t in prompts]
    patched = decode(tiny_llama, [o.token for o in predict(tiny_llama, runs)])
    plain = decode(tiny_llama, [o.token for o in predict(tiny_llama, [Run(t) for t in prompts])])
    solver = TaskVectorSolver(tiny_llama, theta)
    assert solver(queries) == [p.strip() for p in patched] != [p.strip() for p in plain]
    assert TaskVectorSolver(tiny_llama, theta, budget=Budget(rows=1))(queries) == solver(queries)


def test_solver_answers_like_apply_and_generate(tiny_llama, theta):
    solver = TaskVectorSolver(tiny_llama, theta)
    queries = ["kl", "m", "nop"]
    assert solver(queries) == [p.strip() for p in apply(tiny_llama, theta, queries)]
    assert solver.generate(queries, max_new_tokens=4) == [t.strip() for t in generate(tiny_llama, theta, queries,
                                                                                      max_new_tokens=4)]
    add = TaskVectorSolver(tiny_llama, theta, layer=2, mode="add", strength=0.0)
    assert add(queries) == [p.strip() for p in apply(tiny_llama, theta, queries, layer=2, mode="add", strength=0.0)]


def test_from_file_loads_the_vectors_own_model(tiny_llama, theta, tmp_path):
    path = theta.save(tmp_path / "toy.safetensors")
    solver = TaskVectorSolver.from_file(path)
    assert solver.model is not tiny_llama and model_spec(solver.model) == "tiny-llama"
    assert solver(["kl", "m"]) == TaskVectorSolver(tiny_llama, theta)(["kl", "m"])
    assert TaskVectorSolver.from_file(path, model=tiny_llama).model is tiny_llama


def test_solver_refuses_another_model_and_bad_layers(tiny_gemma, tiny_llama, theta, tmp_path):
    path = theta.save(tmp_path / "toy.safetensors")
    with pytest.raises(ValueError, match="allow_transfer"):
        TaskVectorSolver.from_file(path, model=tiny_gemma)
    assert len(TaskVectorSolver.from_file(path, model=tiny_gemma, allow_transfer=True)(["kl"])) == 1
    with pytest.raises(ValueError, match="out of range"):
        TaskVectorSolver(tiny_llama, theta, layer=9)
    with pytest.raises(ValueError, match="no queries"):
        TaskVectorSolver(tiny_llama, theta)([])
