"""What `pip install` puts into site-packages: the library and its experiments under names of their own
(no generic `analyses` or `figures`), and a `tv-lens` that runs `reproduce` from the installed code."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
INSTALLED_AS = {"tv_lens": "tv_lens", "analyses": "tv_lens_analyses", "figures": "tv_lens_figures"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools", minversion="77")  # builds wheels without `wheel`, knows `license-files`
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, capture_output=True)
    return next(out.glob("tv_lens-*.whl"))


def test_the_wheel_holds_every_module_under_its_installed_name(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == set(INSTALLED_AS.values())
    for folder, package in INSTALLED_AS.items():
        for module in (ROOT / folder).rglob("*.py"):
            assert f"{package}/{module.relative_to(ROOT / folder).as_posix()}" in names
    assert any(n.startswith("tv_lens/tasks/data/") and n.endswith(".json") for n in names)
    assert "tv_lens/py.typed" in names  # type checkers read tv_lens's annotations (PEP 561)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "tv-lens = tv_lens.cli.main:main" in entry_points
    assert "experiments = tv_lens_analyses.commands:add_commands" in entry_points


def test_installed_tv_lens_runs_reproduce_and_finds_its_figures(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = ("from tv_lens_analyses.commands import add_commands, figures_module\n"
              "from tv_lens.cli.main import main\n"
              "print(figures_module().__name__)\n"
              "main(['reproduce', '--help'], extra=[add_commands])")
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("tv_lens_figures.make\nusage: tv-lens reproduce")
