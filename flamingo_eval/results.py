"""Run folders: metadata, the prediction journal, per-sample predictions and summary tables.

Layout of `results/<run id>/`:
- `metadata.json`: command, model, package versions, seeds, protocol options and deviations,
  fingerprint, and `status` ("running" until the summary is written, then "complete").
- `journal.rank<N>.jsonl`: every finished prediction of rank N, appended and flushed batch by
  batch, so a crash loses no finished work and a re-run resumes from it.
- `predictions.jsonl`: per-sample records with their scores, rewritten whole after each
  (task, shots, trial) finishes.
- `trials.csv`: one row per (task, shots, sampler, trial seed, metric).
- `summary.csv`: one row per (task, shots, sampler, metric): mean and standard deviation over
  trials and the number of samples.
Every file except the journal is written to a temporary file and renamed into place, so none is
ever left half-written.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from flamingo_eval.journal import journal_path

PACKAGES = (
    "flamingo-eval",
    "torch",
    "torchvision",
    "transformers",
    "tokenizers",
    "open_clip_torch",
    "open-flamingo",
    "datasets",
    "pycocoevalcap",
    "nltk",
    "numpy",
    "pandas",
)
SUMMARY_COLUMNS = [
    "task", "shots", "sampler", "metric", "mean", "std", "num_trials", "num_samples",
]
TRIAL_COLUMNS = ["task", "shots", "sampler", "seed", "metric", "value", "num_samples"]


def package_versions() -> dict[str, str]:
    """Return the installed version of each package in PACKAGES, for the run's metadata."""
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    # Reading package metadata scans sys.path. A process that evaluates several models or tasks
    # reads the same versions each time, and they cannot change while it runs.
    versions = []
    for package in PACKAGES:
        try:
            versions.append((package, package_metadata.version(package)))
        except package_metadata.PackageNotFoundError:
            versions.append((package, "not installed"))
    return tuple(versions)


def fingerprint(config: dict[str, Any]) -> str:
    """Hash a run configuration into a hex digest (canonical JSON, sorted keys)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def new_run_id(config_fingerprint: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{config_fingerprint[:8]}"


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file readable by its owner only; give it the usual permissions.
        os.fchmod(handle, 0o666 & ~_current_umask())
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def summarize(trials: pd.DataFrame) -> pd.DataFrame:
    """Reduce per-trial scores to mean and standard deviation over trials.

    The standard deviation uses ddof 0, as OpenFlamingo's `np.nanstd` does; trials whose metric
    has no value (unannotated splits) are left out.
    """
    rows = []
    keys = ["task", "shots", "sampler", "metric"]
    for (task, shots, sampler, metric), group in trials.groupby(keys, sort=False):
        values = group["value"].dropna().to_numpy(dtype=float)
        rows.append(
            {
                "task": task,
                "shots": int(shots),
                "sampler": sampler,
                "metric": metric,
                "mean": float(np.mean(values)) if len(values) else float("nan"),
                "std": float(np.std(values, ddof=0)) if len(values) else float("nan"),
                "num_trials": int(len(group)),
                "num_samples": int(group["num_samples"].iloc[0]),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


class RunDirectory:
    """Writes one run's folder; see the module docstring for its files."""

    def __init__(self, path: Path, rank: int = 0):
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        self.journal_path = journal_path(path, rank)
        self.predictions_path = path / "predictions.jsonl"
        self.trials_path = path / "trials.csv"
        self.summary_path = path / "summary.csv"
        self.metadata_path = path / "metadata.json"
        self._journal = None
        self._scored_records: list[dict[str, Any]] = []
        self._trial_rows: list[dict[str, Any]] = []

    def write_metadata(self, metadata: dict[str, Any]) -> None:
        write_json_atomic(self.metadata_path, metadata)

    def append_journal(self, records: Iterable[dict[str, Any]]) -> None:
        """Append finished predictions and flush them to disk."""
        if self._journal is None:
            self._journal = self.journal_path.open("a", encoding="utf-8")
        for record in records:
            self._journal.write(json.dumps(record, sort_keys=True) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())

    def add_scored(self, records: list[dict[str, Any]], trial_rows: list[dict[str, Any]]) -> None:
        """Record a finished (task, shots, trial) and rewrite the prediction and trial files."""
        self._scored_records.extend(records)
        self._trial_rows.extend(trial_rows)
        lines = "".join(json.dumps(record, sort_keys=True) + "\n" for record in self._scored_records)
        write_atomic(self.predictions_path, lines)
        trials = pd.DataFrame(self._trial_rows, columns=TRIAL_COLUMNS)
        write_atomic(self.trials_path, trials.to_csv(index=False))

    def write_summary(self) -> pd.DataFrame:
        summary = summarize(pd.DataFrame(self._trial_rows, columns=TRIAL_COLUMNS))
        write_atomic(self.summary_path, summary.to_csv(index=False))
        return summary

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
