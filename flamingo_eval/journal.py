"""The prediction journal: finished predictions appended per batch, read back to resume a run.

Each rank appends to its own `journal.rank<N>.jsonl`. A run killed mid-write can leave a
truncated last line: `repair_journal` cuts it off before appending again, and `read_journals`
skips it, so a resumed run redoes only that item.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from flamingo_eval.errors import InputError

logger = logging.getLogger(__name__)

RecordKey = tuple[str, int, int, str, str]


def journal_path(run_dir: Path, rank: int) -> Path:
    return run_dir / f"journal.rank{rank}.jsonl"


def record_key(record: dict[str, Any]) -> RecordKey:
    """Identify a prediction: (task, shots, trial seed, sampler, sample id)."""
    return (record["task"], int(record["shots"]), int(record["seed"]), record["sampler"], str(record["sample_id"]))


def repair_journal(path: Path) -> int:
    """Cut a truncated last line off `path`; return the number of bytes removed."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end == len(data):
        return 0
    with path.open("r+b") as stream:
        stream.truncate(end)
    removed = len(data) - end
    logger.warning("%s: removed a truncated last line (%d bytes); that item will be redone", path, removed)
    return removed


def read_journals(run_dir: Path) -> dict[RecordKey, dict[str, Any]]:
    """Read every rank's journal; return finished records by key (the first copy wins)."""
    finished: dict[RecordKey, dict[str, Any]] = {}
    for path in sorted(run_dir.glob("journal.rank*.jsonl")):
        lines = path.read_bytes().split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                is_last = number == len(lines) or all(not rest.strip() for rest in lines[number:])
                if is_last:
                    logger.warning("%s: skipped a truncated last line; that item will be redone", path)
                    continue
                raise InputError(
                    f"{path}:{number}: invalid JSON line in the journal; delete that line to redo "
                    "its item, or start a new run folder"
                ) from None
            finished.setdefault(record_key(record), record)
    return finished
