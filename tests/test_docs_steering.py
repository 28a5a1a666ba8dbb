"""docs/guides/steering.md: every Python block runs, in order, in one namespace, on the tiny model."""

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "steering.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_python_block_of_the_steering_guide_runs(capsys):
    blocks = BLOCK.findall(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) >= 10
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{PAGE.name} block {i + 1}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "tv:last + tv:first_upper - tv:first" in printed
    assert "cannot combine tv:last and fv:first: a task vector and a function vector are" in printed
    assert "no chat template" in printed
