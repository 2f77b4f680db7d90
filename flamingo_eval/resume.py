"""Choosing the run folder: a new one, or an earlier run of the same configuration to resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from flamingo_eval.errors import InputError

logger = logging.getLogger(__name__)

# The metadata fields that make up a run's configuration; the fingerprint hashes these.
CONFIG_KEYS = ("model", "tasks", "shots", "seeds", "num_samples", "data_source", "versions")
MAX_LISTED_DIFFERENCES = 5


def stored_config(metadata: dict[str, Any]) -> dict[str, Any]:
    return {key: metadata.get(key) for key in CONFIG_KEYS}


def config_differences(stored: Any, current: Any, prefix: str = "") -> list[str]:
    """List the dotted paths of fields whose values differ, e.g. 'model.checkpoint_sha256'."""
    if isinstance(stored, dict) and isinstance(current, dict):
        differences = []
        for key in sorted(set(stored) | set(current), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            differences += config_differences(stored.get(key), current.get(key), path)
        return differences
    # JSON turns tuples into lists; compare through one JSON round trip on both sides.
    if json.loads(json.dumps(stored, default=str)) != json.loads(json.dumps(current, default=str)):
        return [f"{prefix} (stored {_short(stored)}, now {_short(current)})"]
    return []


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def read_metadata(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "metadata.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: invalid JSON ({error}); remove the folder or pass another --output-dir") from None


def check_resumable(run_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """Return the stored metadata when `run_dir` contains a run of this configuration.

    Returns None for an empty or new folder, and raises InputError naming the differing fields
    when the folder contains a run of another configuration.
    """
    metadata = read_metadata(run_dir)
    if metadata is None:
        return None
    differences = config_differences(stored_config(metadata), config)
    if differences:
        listed = "; ".join(differences[:MAX_LISTED_DIFFERENCES])
        more = len(differences) - MAX_LISTED_DIFFERENCES
        suffix = f"; and {more} more" if more > 0 else ""
        raise InputError(
            f"{run_dir} contains a run of another configuration, so it cannot be resumed: "
            f"{listed}{suffix}; pass a new --output-dir to start over"
        )
    return metadata


def find_unfinished_run(results_dir: Path, config_fingerprint: str) -> Path | None:
    """Return the newest unfinished run folder under `results_dir` with this fingerprint."""
    if not results_dir.is_dir():
        return None
    candidates = []
    for metadata_path in results_dir.glob("*/metadata.json"):
        try:
            metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            continue
        if metadata.get("fingerprint") == config_fingerprint and metadata.get("status") != "complete":
            candidates.append(metadata_path.parent)
    return max(candidates, key=lambda path: path.name) if candidates else None
