"""The files a run writes keep their exact format: a small tiny-llama reproduction is compared, file by
file, with the one recorded in tests/golden/reproduce (written by the code that wrote the long runs
being read back). Only what varies between runs is left out: versions, write times, timings and the
digests covering them, and the t-SNE coordinates of the clusters (t-SNE turns last-bit differences of
another numpy, scipy or scikit-learn into another layout: they are checked to be finite, one per θ).
Numbers are compared within float round-off (another CPU may round a last bit differently); everything
else (keys, their order, strings, integers, the JSON layout) exactly."""

import json
import math
from pathlib import Path

import pytest

from analyses import clusters, conflicting_tasks, reproduce
from tv_lens.runs.records import ANALYSES, SCHEMA_VERSION, results_from_dict
from tv_lens.runs.store import RESULTS_FILE, strict
from tv_lens.settings import Settings

GOLDEN = Path(__file__).parent / "golden" / "reproduce"
VARYING = {"versions", "written_at", "timings", "digest", "sha256", "file"}
TSNE_FILE, TSNE_COORDINATES = "clusters/results.json", ("x", "y")
PROTOCOL = reproduce.Protocol(main=Settings(n_baseline=4, n_dev=4, n_test=4),
                              conflict=conflicting_tasks.ConflictSettings(n_items=4),
                              cluster=clusters.ClusterSettings(n_per_task=4), k=5,
                              tasks=("next_letter", "to_upper", "list_last", "list_first"))

pytestmark = pytest.mark.usefixtures("one_thread")


def without_varying(data):
    """`data` with the values that differ from run to run replaced by '*'."""
    if isinstance(data, dict):
        return {key: "*" if key in VARYING else without_varying(value) for key, value in data.items()}
    if isinstance(data, list):
        return [without_varying(value) for value in data]
    return data


def layout(data) -> bytes:
    """The byte layout of every results file: JSON indented by one space, no NaN."""
    return json.dumps(data, indent=1, allow_nan=False).encode()


def without_tsne(data: dict) -> dict:
    """A clusters results file with its t-SNE coordinates left out."""
    points = [{key: value for key, value in point.items() if key not in TSNE_COORDINATES} for point in data["points"]]
    return {**data, "points": points}


def run_files(model, out: Path) -> dict[str, dict]:
    """Reproduce PROTOCOL into `out`; every JSON file written, by path relative to `out`, as written."""
    reproduce.reproduce(model, out, protocol=PROTOCOL, progress=lambda message: None,
                        experiments=[e for e in reproduce.EXPERIMENTS if e != "function_vectors"])
    return {str(p.relative_to(out)): json.loads(p.read_bytes()) for p in sorted(out.rglob("*.json"))}


def same(a, b, where: str = "") -> None:
    """Assert that `a` equals `b`: key order included, floats within round-off."""
    assert type(a) is type(b), f"{where}: {a!r} != {b!r}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{where}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6), f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_results_files_keep_their_exact_format(tiny_llama, tmp_path):
    written = run_files(tiny_llama, tmp_path)
    golden = {str(p.relative_to(GOLDEN)): json.loads(p.read_bytes()) for p in sorted(GOLDEN.rglob("*.json"))}
    assert sorted(written) == sorted(golden)
    for name, data in written.items():
        assert (tmp_path / name).read_bytes() == layout(data), f"{name}: not in the results file layout"
        assert data["schema_version"] == SCHEMA_VERSION
        expected = golden[name]
        if name == TSNE_FILE:
            coordinates = [point[c] for point in data["points"] for c in TSNE_COORDINATES]
            assert len(coordinates) == 2 * data["stats"]["n_vectors"] and all(map(math.isfinite, coordinates))
            data, expected = (without_tsne(d) for d in (data, expected))
        same(without_varying(data), expected, name)


def filled(data):
    """A golden file with the values left out ('*') filled in with empty ones of their type."""
    if isinstance(data, dict):
        return {key: ({} if key in ("versions", "timings") else "") if value == "*" else filled(value)
                for key, value in data.items()}
    return [filled(value) for value in data] if isinstance(data, list) else data


@pytest.mark.parametrize("path", sorted(GOLDEN.rglob("*.json")), ids=lambda p: str(p.relative_to(GOLDEN)))
def test_typed_results_write_back_the_files_they_were_read_from(path):
    data = filled(json.loads(path.read_bytes()))
    if path.name == RESULTS_FILE:
        typed = results_from_dict(data)
        assert type(typed) is ANALYSES[data["analysis"]]
    else:
        typed = ANALYSES[data["analysis"]].UNIT.from_dict(data["result"], data["model"]["n_layers"])
        data = data["result"]
    assert layout(strict(typed.to_dict())) == layout(data)
