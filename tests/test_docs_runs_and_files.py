"""docs/guides/runs-and-files.md: every Python block runs, in order, in one namespace, on the tiny model."""

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "runs-and-files.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_python_block_of_the_runs_and_files_guide_runs(capsys, monkeypatch):
    monkeypatch.delenv("TV_LENS_CACHE", raising=False)  # the guide sets and removes its own
    blocks = BLOCK.findall(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{PAGE.name} block {i + 1}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "['next_letter', 'to_upper'] ['next_letter', 'to_upper']" in printed
    assert "['next_letter']" in printed
    assert "(No space left on device): free some space there, or write elsewhere" in printed
    assert "(truncated or replaced): rebuilding it" in printed
