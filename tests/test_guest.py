"""tv_lens is a guest in the user's process: importing and calling it changes no environment variable and no
global torch setting; one model shared by several Python threads gives each call its own answers."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import torch

import tv_lens as tv
from tv_lens.models.tiny import tiny_hf_model
from tv_lens.patching.engine import Budget

ROOT = Path(__file__).parents[1]

# torch, transformers and TransformerLens come first: importing them is not tv_lens's doing (TransformerLens's
# import of torch._dynamo sets TORCHINDUCTOR_CACHE_DIR)
PROCESS = """
import json, os, sys, warnings
import torch, transformers, transformer_lens.model_bridge
from transformers.utils import logging as hf_logging

def state():
    return {"env": dict(os.environ), "threads": torch.get_num_threads(), "dtype": str(torch.get_default_dtype()),
            "grad": torch.is_grad_enabled(), "inference": torch.is_inference_mode_enabled(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "matmul": torch.get_float32_matmul_precision(), "warnings": repr(warnings.filters),
            "transformers": [hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()]}

before = state()
import tv_lens as tv
after_import = state()
model = tv.load_model("tiny-llama", device="cpu")
theta = tv.learn(model, [("a", "b"), ("c", "d"), ("e", "f")], ["g", "k"], layer=1)
tv.apply(model, theta, ["m", "p"])
tv.generate(model, theta, ["m"], max_new_tokens=3)
tv.evaluate(model, tv.get_task("next_letter"), n_baseline=2, n_dev=2, n_test=2, n_shots=3)
print(json.dumps({"before": before, "after import": after_import, "after calls": state()}))
"""


def test_importing_and_calling_tv_lens_changes_no_process_setting():
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2", "HOME": str(Path.home())}
    done = subprocess.run([sys.executable, "-c", PROCESS], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    states = json.loads(done.stdout.splitlines()[-1])
    assert states["before"]["threads"] == 2 and states["before"]["grad"]
    assert states["after import"] == states["before"]
    assert states["after calls"] == states["before"]


def vectors(model) -> list[tv.TaskVector]:
    """Two task vectors that answer the same queries differently."""
    return [tv.learn(model, demos, ["n", "x"], layer=1)
            for demos in ([("a", "b"), ("c", "d"), ("e", "f")], [("a", "A"), ("c", "C"), ("e", "E")])]


QUERIES = [c for c in "bdfhjlmoqsuvwyz"]


def test_two_threads_applying_vectors_to_one_model_get_the_answers_each_would_alone(tiny_llama):
    """tv.apply from two Python threads on one model, with different vectors, while a third thread runs plain
    forward passes of its own: the same answers as one call after the other, and unhooked logits for the third."""
    thetas = vectors(tiny_llama)
    budget = Budget(rows=2)  # many forward passes each, so the threads interleave
    alone = [tv.apply(tiny_llama, theta, QUERIES, budget=budget) for theta in thetas]
    assert alone[0] != alone[1]
    tokens = tiny_llama.to_tokens(["m->", "p->"], padding_side="left")
    with torch.inference_mode():
        plain = tiny_llama(tokens)
    results: dict[str, list] = {"0": [], "1": [], "plain": []}
    errors: list[BaseException] = []

    def work(name: str, job) -> None:
        try:
            for _ in range(6):
                results[name].append(job())
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            errors.append(err)

    def forward():
        with torch.inference_mode():
            return tiny_llama(tokens)

    workers = [threading.Thread(target=work, args=(str(i), lambda t=theta: tv.apply(tiny_llama, t, QUERIES,
                                                                                    budget=budget)))
               for i, theta in enumerate(thetas)]
    workers.append(threading.Thread(target=work, args=("plain", forward)))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    assert results["0"] == [alone[0]] * 6 and results["1"] == [alone[1]] * 6
    assert all(torch.allclose(logits, plain, atol=1e-5) for logits in results["plain"])


def test_threads_generating_on_one_model_get_their_own_texts():
    """On a bridge the user booted, whose key/value cache the engine routes during each of its passes only."""
    from transformer_lens.model_bridge import TransformerBridge

    hf, tokenizer = tiny_hf_model("tiny-gemma")
    model = TransformerBridge.boot_transformers("tiny-gemma", hf_model=hf, tokenizer=tokenizer)
    model.enable_compatibility_mode(disable_warnings=True)
    thetas = vectors(model)
    alone = [tv.generate(model, theta, QUERIES, max_new_tokens=8) for theta in thetas]
    got: list = [None, None]

    def work(i: int) -> None:
        got[i] = [tv.generate(model, thetas[i], QUERIES, max_new_tokens=8) for _ in range(3)]

    workers = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert got == [[alone[0]] * 3, [alone[1]] * 3]


def test_a_block_of_edits_in_one_thread_edits_only_that_threads_passes(tiny_llama):
    """A user's `with theta.applied(...)` block (positions "all": read from each pass) in one thread while
    tv.apply runs another vector in a second: each sees its own edit only."""
    thetas = vectors(tiny_llama)
    tokens = tiny_llama.to_tokens("m->p\nq->")
    budget = Budget(rows=2)
    with thetas[0].applied(tiny_llama, 1, positions="all"), torch.inference_mode():
        edited = tiny_llama(tokens)
    with torch.inference_mode():
        assert not torch.allclose(edited, tiny_llama(tokens), atol=1e-3)
    alone = tv.apply(tiny_llama, thetas[1], QUERIES, budget=budget)
    own: list = []
    answers: list = []

    def user() -> None:
        with thetas[0].applied(tiny_llama, 1, positions="all"), torch.inference_mode():
            own.extend(tiny_llama(tokens) for _ in range(8))

    def library() -> None:
        answers.extend(tv.apply(tiny_llama, thetas[1], QUERIES, budget=budget) for _ in range(4))

    workers = [threading.Thread(target=user), threading.Thread(target=library)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(own) == 8 and all(torch.allclose(logits, edited, atol=1e-5) for logits in own)
    assert answers == [alone] * 4
