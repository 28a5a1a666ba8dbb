"""tv_lens.patching.hooks on a hand-built HookedRootModule and on a bridge: capture, replace, add, scale."""

import pytest
import torch
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from tv_lens.patching import hooks


class Toy(HookedRootModule):
    """x -> hook_mid(x + 1) -> * 2: small enough to check every edit by hand."""

    def __init__(self):
        super().__init__()
        self.hook_mid = HookPoint()
        self.setup()

    def forward(self, x):
        return self.hook_mid(x + 1.0) * 2


@pytest.fixture
def toy():
    return Toy()


def x():
    return torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)


def test_capture_at_all_positions_one_position_and_per_row(toy):
    with hooks.capturing(toy, "hook_mid") as everything:
        toy(x())
    with hooks.capturing(toy, ["hook_mid"], index=-1) as last:
        toy(x())
    with hooks.capturing(toy, "hook_mid", index=[0, 2]) as per_row:
        toy(x())
    assert torch.equal(everything["hook_mid"], x() + 1)
    assert torch.equal(last["hook_mid"], x()[:, -1] + 1)
    assert torch.equal(per_row["hook_mid"], torch.stack([x()[0, 0], x()[1, 2]]) + 1)


def test_replace_add_scale_as_hook_pairs_and_context_managers(toy):
    v = torch.full((4,), 10.0)
    replaced = toy.run_with_hooks(x(), fwd_hooks=[hooks.replacing("hook_mid", v, index=-1)])
    expected = (x() + 1) * 2
    expected[:, -1] = 20.0
    assert torch.equal(replaced, expected)

    with hooks.hooked(toy, [hooks.adding("hook_mid", v, strength=0.5, index=[1, 0])]):
        added = toy(x())
    expected = x() + 1
    expected[0, 1] += 5.0
    expected[1, 0] += 5.0
    assert torch.equal(added, expected * 2)

    scaled = toy.run_with_hooks(x(), fwd_hooks=[hooks.scaling("hook_mid", 0.0, rows=[1])])
    assert torch.equal(scaled[0], (x()[0] + 1) * 2) and torch.equal(scaled[1], torch.zeros(3, 4))


def test_hooks_are_removed_after_the_block_even_on_error(toy):
    with pytest.raises(RuntimeError):
        with hooks.hooked(toy, [hooks.scaling("hook_mid", 0.0)]):
            raise RuntimeError("boom")
    assert torch.equal(toy(x()), (x() + 1) * 2)


def test_edits_compose_in_order(toy):
    v = torch.ones(4)
    out = toy.run_with_hooks(x(), fwd_hooks=[hooks.replacing("hook_mid", v), hooks.adding("hook_mid", v, strength=2.0)])
    assert torch.equal(out, torch.full((2, 3, 4), 6.0))


def test_on_a_bridge_capture_then_replace_is_the_identity(tiny_llama):
    tokens = tiny_llama.to_tokens(["abc->d", "x->"], padding_side="left")
    name = "blocks.1.hook_resid_post"
    with hooks.capturing(tiny_llama, name, index=-1) as acts:
        plain = tiny_llama(tokens)
    with hooks.hooked(tiny_llama, [hooks.replacing(name, acts[name], index=-1)]):
        patched = tiny_llama(tokens)
    torch.testing.assert_close(patched, plain)
    steered = tiny_llama.run_with_hooks(tokens, fwd_hooks=[hooks.adding(name, acts[name][0], strength=3.0, index=-1)])
    assert not torch.allclose(steered[:, -1], plain[:, -1])
    assert not tiny_llama.list_hooks()
