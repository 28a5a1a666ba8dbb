"""A run directory read back for figures, reports and tables: only results that are this run's.

Each analysis's results file is read as `load_results` reads it (a regular file of bounded size, its digest,
its schema, the numbers that follow from others recomputed), then kept only when
- every unit record it names as a source is still in the run directory with the digest it names (so a
  results file copied in from another run, or left behind when its units were recomputed with another
  seed or model, is not taken for this run's), and
- it is of the run's configuration: the same model weights (fingerprint) and seed as the run just made
  (`like`), else as the main table, else as the first analysis found.
What is left out is said in one line per analysis, with what to do; nothing is ever shown under the name of
a configuration that did not make it. The digests guard against accidents, not against someone who can
write the directory (see docs/guides/runs-and-files.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tv_lens.codec import ResultsError
from tv_lens.models.bridge import Model
from tv_lens.runs.records import ANALYSES, Results
from tv_lens.runs.store import RESULTS_FILE, load_results, recorded_digest


@dataclass(frozen=True)
class Configuration:
    """What makes results comparable within a run directory: the model's weights and the seed."""

    model: str = field(compare=False)
    fingerprint: str
    seed: int

    @classmethod
    def of(cls, results: Results) -> Configuration:
        return cls(results.model.model, results.model.fingerprint, results.seed)

    @classmethod
    def of_model(cls, model: Model, seed: int) -> Configuration:
        """The configuration of results `model` makes with `seed`."""
        from tv_lens.models.provenance import fingerprint, model_spec

        return cls(model_spec(model), fingerprint(model), seed)

    def __str__(self) -> str:
        return f"{self.model} (weights {self.fingerprint}) with seed {self.seed}"


@dataclass
class RunResults:
    """The usable results of a run directory by analysis (in the paper's order), their configuration, and
    the analyses left out with the reason for each (one line)."""

    results: dict[str, Results]
    configuration: Configuration | None
    left_out: dict[str, str] = field(default_factory=dict)


def missing_source(run_dir: Path, results: Results) -> str | None:
    """The first source of `results` that `run_dir` no longer holds as it was (`analysis/key`), or None."""
    for source in results.sources:
        if recorded_digest(run_dir, source.analysis, source.key) != source.digest:
            return f"{source.analysis}/{source.key}"
    return None


def read_run(run_dir: str | Path, analyses: Sequence[str] = tuple(ANALYSES),
             like: Configuration | None = None) -> RunResults:
    """The results of `analyses` found in `run_dir` that are this run's (see the module's description)."""
    run_dir = Path(run_dir)
    found: dict[str, Results] = {}
    left_out: dict[str, str] = {}
    for name in analyses:
        path = run_dir / name / RESULTS_FILE
        if not (path.exists() or path.is_symlink()):
            continue
        try:
            results = load_results(path)
        except ResultsError as err:
            left_out[name] = str(err)
            continue
        gone = missing_source(run_dir, results)
        if gone is not None:
            left_out[name] = (f"{path} was assembled from unit {gone}, which {run_dir} no longer holds as it was "
                              f"(recomputed, replaced or removed since): rerun the analysis into {run_dir} to "
                              f"reassemble it")
            continue
        found[name] = results
    reference = like or (Configuration.of(found["main_table"]) if "main_table" in found else None) or next(
        (Configuration.of(r) for r in found.values()), None)
    for name, results in list(found.items()):
        if Configuration.of(results) != reference:
            left_out[name] = (f"{run_dir / name / RESULTS_FILE} is of {Configuration.of(results)}, not of this "
                              f"run's {reference}: move it out, or rerun the analysis into {run_dir} with that "
                              f"model and seed")
            del found[name]
    order = list(analyses)
    left_out = dict(sorted(left_out.items(), key=lambda item: order.index(item[0])))
    return RunResults(found, reference if found else None, left_out)
