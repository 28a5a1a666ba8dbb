"""The engine's public surface: predictions of runs and groups, token counting, prefill / step, and
the rule that no module imports another's private names."""

import ast
from pathlib import Path

import torch

from tv_lens.patching.engine import Budget, Run, counting, encode, predict, prefill, step
from tv_lens.patching.interventions import Intervention

ROOT = Path(__file__).resolve().parents[1]


def test_counting_counts_the_tokens_of_the_block_only(tiny_llama):
    seqs = encode(tiny_llama, ["example:ab->", "x->", "example:abcdef->"])
    predict(tiny_llama, [Run(s) for s in seqs])  # outside any block: counted nowhere
    with counting() as outer:
        predict(tiny_llama, [Run(s) for s in seqs])
        with counting() as inner:
            predict(tiny_llama, [Run(s) for s in seqs], budget=Budget(rows=1))
    width = max(len(s) for s in seqs)
    assert inner.tokens == sum(map(len, seqs)) and inner.forwards == 3 and inner.padded_tokens == inner.tokens
    assert outer.tokens == 2 * inner.tokens and outer.forwards == 4
    assert outer.padded_tokens == width * len(seqs) + inner.padded_tokens
    assert outer.logit_rows == 2 * len(seqs)
    predict(tiny_llama, [Run(s) for s in seqs])
    assert outer.forwards == 4


def test_groups_and_flat_runs_give_the_same_predictions(tiny_llama):
    seqs = encode(tiny_llama, ["example:ab->c\nexample:d->", "example:ab->c\nexample:efg->"])
    v = torch.randn(tiny_llama.cfg.d_model, generator=torch.Generator().manual_seed(0))
    runs = [Run(seqs[0], targets=(3,)), Run(seqs[1], (Intervention(1, v),), targets=(3, 4))]
    with counting() as shared:
        (grouped,) = predict(tiny_llama, [runs], logits=True)
    with counting() as separate:
        flat = predict(tiny_llama, runs, logits=True)
    assert shared.tokens < separate.tokens  # the common prefix ran once
    for g, f in zip(grouped, flat):
        assert g.token == f.token and torch.allclose(g.logits, f.logits, atol=1e-5)
        assert torch.allclose(g.target_probs, f.target_probs, atol=1e-6)
    assert flat[0].target_probs.shape == (1,) and flat[1].target_probs.shape == (2,)
    assert predict(tiny_llama, []) == []


def test_prefill_and_step_continue_like_a_longer_prompt(tiny_llama):
    seqs = encode(tiny_llama, ["example:ab->", "x->"])
    edits = [(Intervention(1, torch.zeros(tiny_llama.cfg.d_model), mode="add"),), ()]
    state = prefill(tiny_llama, seqs, edits)
    first = predict(tiny_llama, [Run(s, e) for s, e in zip(seqs, edits)], logits=True)
    assert torch.allclose(state.logits, torch.stack([p.logits for p in first]), atol=1e-5)
    nxt = state.logits.argmax(-1)
    state = step(tiny_llama, state.select([1]), nxt[[1]])
    longer = predict(tiny_llama, [Run(seqs[1] + [int(nxt[1])])], logits=True)[0]
    assert torch.allclose(state.logits[0], longer.logits, atol=1e-4)


def private_imports(path: Path) -> list[str]:
    """`from module import _name` of another module of this repository, in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (
                "tv_lens", "analyses", "figures", "benchmarks"):
            found += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_module_imports_another_modules_private_names():
    files = [p for folder in ("tv_lens", "analyses", "figures", "benchmarks", "tests", "examples")
             for p in (ROOT / folder).rglob("*.py")]
    assert len(files) > 20
    assert [hit for p in files for hit in private_imports(p)] == []
