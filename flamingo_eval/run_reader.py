"""Load finished run folders back for `compare`, `report` and `check`; never reruns a model.

A run folder is what `flamingo_eval.results.RunDirectory` writes: `metadata.json`,
`predictions.jsonl` (per-sample records with their scores), `trials.csv` and `summary.csv`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from flamingo_eval.errors import InputError
from flamingo_eval.results import SUMMARY_COLUMNS, TRIAL_COLUMNS, summarize

logger = logging.getLogger(__name__)

# Metadata fields, per task, that decide which items are scored and how.
TASK_PROTOCOL_FIELDS = ("file_sha256", "protocol", "num_eval_examples", "num_demo_examples")
# Run-wide metadata fields that decide which items are scored and with which demonstrations.
RUN_PROTOCOL_FIELDS = ("shots", "seeds", "num_samples")

# Per-sample scores are keyed by (task, shots, sampler, trial seed, sample id).
SampleKey = tuple[str, int, str, int, str]


@dataclass
class Run:
    """One run folder, read back: metadata, summary, trials and (lazily) per-sample records."""

    path: Path
    label: str
    metadata: dict[str, Any]
    summary: pd.DataFrame
    trials: pd.DataFrame
    _records: list[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        return self.metadata.get("status") == "complete"

    @property
    def task_names(self) -> list[str]:
        return list(self.metadata.get("tasks", {}))

    def records(self) -> list[dict[str, Any]]:
        """Return the per-sample prediction records, read on first use."""
        if self._records is None:
            self._records = list(read_predictions(self.path / "predictions.jsonl"))
        return self._records

    def sample_scores(self, task: str, metric: str) -> dict[SampleKey, float]:
        """Map (task, shots, sampler, seed, sample id) to the per-sample score of `metric`.

        Records without a score for the metric (metrics with no per-sample value, such as
        ROC-AUC, or unannotated items) are left out.
        """
        scores: dict[SampleKey, float] = {}
        for record in self.records():
            if record.get("task") != task:
                continue
            value = (record.get("scores") or {}).get(metric)
            if value is None:
                continue
            key = (
                task,
                int(record["shots"]),
                str(record.get("sampler", "")),
                int(record["seed"]),
                str(record["sample_id"]),
            )
            scores[key] = float(value)
        return scores

    def protocol_identity(self, task: str) -> dict[str, Any]:
        """Return the settings that must match for two runs' scores on `task` to be comparable."""
        return protocol_identity(self.metadata, task, where=self.path / "metadata.json")


def protocol_identity(metadata: dict[str, Any], task: str, where: Path | str) -> dict[str, Any]:
    """Collect the task's protocol fields and the run-wide shots, seeds and sample count."""
    tasks = metadata.get("tasks")
    if not isinstance(tasks, dict) or task not in tasks:
        raise InputError(f"{where}: no entry for task {task!r} under 'tasks'")
    task_entry = tasks[task]
    identity = {name: task_entry.get(name) for name in TASK_PROTOCOL_FIELDS}
    identity.update({name: metadata.get(name) for name in RUN_PROTOCOL_FIELDS})
    return identity


def differing_fields(first: Any, second: Any, prefix: str = "") -> list[str]:
    """List the dotted paths at which two JSON-like values differ (dict keys compared recursively).

    A key absent on one side equals a None value on the other, so adding an optional protocol
    setting (recorded as None when unused) does not invalidate records made before it existed.
    """
    if isinstance(first, dict) and isinstance(second, dict):
        paths = []
        for key in sorted(set(first) | set(second), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if (key not in first and second[key] is None) or (key not in second and first[key] is None):
                continue
            if key not in first or key not in second:
                paths.append(path)
            else:
                paths.extend(differing_fields(first[key], second[key], path))
        return paths
    if first != second:
        return [prefix or "(value)"]
    return []


def read_predictions(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the records of a predictions file; raise InputError naming the bad line."""
    if not path.is_file():
        raise InputError(f"{path}: predictions file not found; is this a complete run folder?")
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"{path}:{number}: invalid JSON ({error.msg}); rerun or repair the run") from None
            missing = [name for name in ("task", "shots", "seed", "sample_id") if name not in record]
            if missing:
                raise InputError(f"{path}:{number}: record lacks {', '.join(missing)}")
            yield record


def load_run(path: Path, label: str | None = None) -> Run:
    """Read a run folder; raise InputError when a required file is missing or malformed."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: run folder not found")
    metadata_path = path / "metadata.json"
    if not metadata_path.is_file():
        raise InputError(f"{metadata_path}: not found; pass a folder written by `flamingo-eval run`")
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"{metadata_path}: invalid JSON ({error.msg})") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("tasks"), dict):
        raise InputError(f"{metadata_path}: missing the 'tasks' mapping; not a flamingo-eval run folder")

    trials = _read_table(path / "trials.csv", TRIAL_COLUMNS)
    summary_path = path / "summary.csv"
    if summary_path.is_file():
        summary = _read_table(summary_path, SUMMARY_COLUMNS)
    else:
        # A run still in progress (or one that crashed) has trials but no summary yet.
        logger.warning("%s: no summary.csv (status %s); summarising trials.csv", path, metadata.get("status"))
        summary = summarize(trials)
    return Run(path=path, label=label or path.name, metadata=metadata, summary=summary, trials=trials)


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: not found; the run has not finished any trial")
    table = pd.read_csv(path)
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    table["shots"] = table["shots"].astype(int)
    table["sampler"] = table["sampler"].astype(str)
    return table


def load_runs(paths: list[Path], labels: list[str] | None = None) -> list[Run]:
    """Read several run folders, giving each a distinct label (folder name unless `labels`)."""
    if labels is not None and len(labels) != len(paths):
        raise InputError(f"--labels lists {len(labels)} names for {len(paths)} run folders")
    runs = []
    seen: dict[str, int] = {}
    for index, path in enumerate(paths):
        label = labels[index] if labels is not None else Path(path).resolve().name
        if label in seen:
            seen[label] += 1
            label = f"{label} ({seen[label]})"
        else:
            seen[label] = 1
        runs.append(load_run(Path(path), label))
    return runs
