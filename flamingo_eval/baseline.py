"""Baseline files for `flamingo-eval check`: expected scores, allowed drops and the protocol.

A baseline is YAML (any suffix but .json) or JSON:

    format: flamingo-eval-baseline/1
    default_allowed_drop: {absolute: 1.0}       # used by entries without their own
    protocol:                                   # what the scores were measured under
      shots: [0, 4]
      seeds: [1]
      num_samples: 16
      tasks:
        okvqa: {file_sha256: ..., protocol: {...}, num_eval_examples: 64, num_demo_examples: 256}
    source_run: {path: ..., fingerprint: ..., model: {...}}   # for people; never compared
    scores:
      - {task: okvqa, shots: 0, sampler: random, metric: vqa_accuracy, value: 31.2, std: 0.4,
         allowed_drop: {absolute: 0.5, std: 2.0}}

An allowed drop is in the metric's units (`absolute`), in multiples of the baseline's standard
deviation over trials (`std`), or both, and then the larger of the two applies. A bare number
means `absolute`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flamingo_eval.errors import InputError
from flamingo_eval.results import write_atomic
from flamingo_eval.run_reader import RUN_PROTOCOL_FIELDS, TASK_PROTOCOL_FIELDS, Run

FORMAT = "flamingo-eval-baseline/1"
DEFAULT_ALLOWED_DROP_POINTS = 1.0


@dataclass(frozen=True)
class AllowedDrop:
    """How far a score may fall below the baseline value before it counts as a regression."""

    absolute: float | None = None
    std: float | None = None

    def amount(self, baseline_std: float | None) -> float:
        """Return the allowed drop in metric units; a missing or NaN standard deviation is 0."""
        spread = 0.0 if baseline_std is None or math.isnan(baseline_std) else baseline_std
        candidates = [0.0]
        if self.absolute is not None:
            candidates.append(self.absolute)
        if self.std is not None:
            candidates.append(self.std * spread)
        return max(candidates)

    def describe(self) -> str:
        parts = []
        if self.absolute is not None:
            parts.append(f"{self.absolute:g} point" + ("" if self.absolute == 1 else "s"))
        if self.std is not None:
            parts.append(f"{self.std:g} std")
        return " or ".join(parts) if parts else "0"

    def to_dict(self) -> dict[str, float]:
        result = {}
        if self.absolute is not None:
            result["absolute"] = self.absolute
        if self.std is not None:
            result["std"] = self.std
        return result


@dataclass(frozen=True)
class BaselineEntry:
    """One expected score: a (task, shots, sampler, metric) and its value."""

    task: str
    shots: int
    sampler: str
    metric: str
    value: float
    std: float | None
    allowed_drop: AllowedDrop | None = None

    @property
    def key(self) -> tuple[str, int, str, str]:
        return (self.task, self.shots, self.sampler, self.metric)


@dataclass
class Baseline:
    """A parsed baseline file."""

    path: Path
    protocol: dict[str, Any]
    entries: list[BaselineEntry]
    default_allowed_drop: AllowedDrop = field(default_factory=lambda: AllowedDrop(absolute=DEFAULT_ALLOWED_DROP_POINTS))
    source_run: dict[str, Any] = field(default_factory=dict)

    def allowed_drop(self, entry: BaselineEntry) -> AllowedDrop:
        return entry.allowed_drop or self.default_allowed_drop

    def task_identity(self, task: str) -> dict[str, Any]:
        """Return the baseline's protocol for `task` in the shape of `Run.protocol_identity`."""
        identity = dict(self.protocol.get("tasks", {}).get(task, {}))
        identity.update({name: self.protocol.get(name) for name in RUN_PROTOCOL_FIELDS})
        return identity


def parse_allowed_drop(value: Any, where: str) -> AllowedDrop:
    """Parse `0.5`, `{absolute: 0.5}`, `{std: 2}` or both keys; raise InputError otherwise."""
    if isinstance(value, bool):
        raise InputError(f"{where}: allowed drop must be a number or a mapping with absolute/std, got {value!r}")
    if isinstance(value, (int, float)):
        return AllowedDrop(absolute=_non_negative(value, where))
    if not isinstance(value, dict) or not value or set(value) - {"absolute", "std"}:
        raise InputError(
            f"{where}: allowed drop must be a number or a mapping with keys absolute and/or std "
            f"(example: {{absolute: 0.5, std: 2}}), got {value!r}"
        )
    return AllowedDrop(
        absolute=_non_negative(value["absolute"], f"{where}.absolute") if "absolute" in value else None,
        std=_non_negative(value["std"], f"{where}.std") if "std" in value else None,
    )


def _non_negative(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
        raise InputError(f"{where}: must be a non-negative number, got {value!r}")
    return float(value)


def _require(raw: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in raw:
        raise InputError(f"{where}: missing field {name!r}")
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InputError(f"{where}: field {name!r} has invalid value {value!r}")
    return value


def load_baseline(path: Path) -> Baseline:
    """Read and validate a baseline file; raise InputError naming the file and field."""
    if not path.is_file():
        raise InputError(f"{path}: baseline file not found; create one with --update-baseline")
    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise InputError(f"{path}: invalid {'JSON' if path.suffix == '.json' else 'YAML'}: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping with 'protocol' and 'scores'")
    if raw.get("format") != FORMAT:
        raise InputError(f"{path}: field 'format' is {raw.get('format')!r}, expected {FORMAT!r}")

    protocol = _require(raw, "protocol", dict, str(path))
    tasks = _require(protocol, "tasks", dict, f"{path}: protocol")
    for name in RUN_PROTOCOL_FIELDS:
        if name not in protocol:
            raise InputError(f"{path}: protocol: missing field {name!r}")
    for task, identity in tasks.items():
        if not isinstance(identity, dict):
            raise InputError(f"{path}: protocol.tasks.{task} must be a mapping")

    default = AllowedDrop(absolute=DEFAULT_ALLOWED_DROP_POINTS)
    if "default_allowed_drop" in raw:
        default = parse_allowed_drop(raw["default_allowed_drop"], f"{path}: default_allowed_drop")

    entries = []
    for index, item in enumerate(_require(raw, "scores", list, str(path))):
        where = f"{path}: scores[{index}]"
        if not isinstance(item, dict):
            raise InputError(f"{where}: expected a mapping with task, shots, sampler, metric, value")
        std = item.get("std")
        if std is not None and (isinstance(std, bool) or not isinstance(std, (int, float))):
            raise InputError(f"{where}: field 'std' has invalid value {std!r}")
        entry = BaselineEntry(
            task=_require(item, "task", str, where),
            shots=_require(item, "shots", int, where),
            sampler=_require(item, "sampler", str, where),
            metric=_require(item, "metric", str, where),
            value=float(_require(item, "value", (int, float), where)),
            std=None if std is None else float(std),
            allowed_drop=parse_allowed_drop(item["allowed_drop"], f"{where}.allowed_drop") if "allowed_drop" in item else None,
        )
        if entry.task not in tasks:
            raise InputError(f"{where}: task {entry.task!r} has no entry under protocol.tasks")
        entries.append(entry)
    keys = [entry.key for entry in entries]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise InputError(f"{path}: scores list {duplicates[0]} more than once")
    return Baseline(path, protocol, entries, default, raw.get("source_run") or {})


def baseline_from_run(
    run: Run, path: Path, previous: Baseline | None, default_allowed_drop: AllowedDrop
) -> Baseline:
    """Build a baseline from a run's summary, keeping `previous` per-entry allowed drops."""
    kept_drops = {entry.key: entry.allowed_drop for entry in previous.entries} if previous else {}
    tasks = {}
    for task, entry in run.metadata["tasks"].items():
        tasks[task] = {name: entry.get(name) for name in TASK_PROTOCOL_FIELDS}
    protocol = {"shots": run.metadata.get("shots"), "seeds": run.metadata.get("seeds"),
                "num_samples": run.metadata.get("num_samples"), "tasks": tasks}

    entries = []
    for row in run.summary.itertuples(index=False):
        if isinstance(row.mean, float) and math.isnan(row.mean):
            continue
        key = (row.task, int(row.shots), row.sampler, row.metric)
        entries.append(
            BaselineEntry(
                task=row.task, shots=int(row.shots), sampler=row.sampler, metric=row.metric,
                value=float(row.mean), std=None if math.isnan(row.std) else float(row.std),
                allowed_drop=kept_drops.get(key),
            )
        )
    source_run = {
        "path": str(run.path),
        "fingerprint": run.metadata.get("fingerprint"),
        "model": run.metadata.get("model"),
        "finished_at": run.metadata.get("finished_at"),
    }
    return Baseline(path, protocol, entries, default_allowed_drop, source_run)


def write_baseline(baseline: Baseline) -> None:
    """Write the baseline as JSON when its path ends in .json, else as YAML."""
    scores = []
    for entry in baseline.entries:
        item: dict[str, Any] = {
            "task": entry.task, "shots": entry.shots, "sampler": entry.sampler,
            "metric": entry.metric, "value": round(entry.value, 6),
            "std": None if entry.std is None else round(entry.std, 6),
        }
        if entry.allowed_drop is not None:
            item["allowed_drop"] = entry.allowed_drop.to_dict()
        scores.append(item)
    document = {
        "format": FORMAT,
        "default_allowed_drop": baseline.default_allowed_drop.to_dict(),
        "protocol": baseline.protocol,
        "source_run": baseline.source_run,
        "scores": scores,
    }
    # Round-trip through JSON so numpy scalars and tuples become plain YAML types.
    plain = json.loads(json.dumps(document, default=str))
    if baseline.path.suffix == ".json":
        text = json.dumps(plain, indent=2) + "\n"
    else:
        text = (
            "# flamingo-eval baseline: expected scores for `flamingo-eval check`.\n"
            "# Regenerate with: flamingo-eval check --baseline THIS_FILE RUN_DIR --update-baseline\n"
            + yaml.safe_dump(plain, sort_keys=False, width=100)
        )
    write_atomic(baseline.path, text)
