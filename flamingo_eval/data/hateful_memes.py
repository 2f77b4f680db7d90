"""Loader for the Hateful Memes JSON lines files (train.jsonl, dev_seen.jsonl, test_seen.jsonl).

Each line is {"id": 42953, "img": "img/42953.png", "label": 0, "text": "..."}; `label` is
absent in unlabelled files. Split settings:

- `file`: the split's JSON lines file, relative to the data folder.
- `images`: the folder that `img` paths are relative to, relative to the data folder
  (default: the data folder itself, as in the official layout).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from flamingo_eval.data.example import Example
from flamingo_eval.data.files import ImageIndex, data_file, optional_setting, require_field, split_setting
from flamingo_eval.errors import InputError

logger = logging.getLogger(__name__)

LABEL_NAMES = ("no", "yes")


def load_hateful_memes(settings: dict[str, Any], data_dir: Path, split: str) -> list[Example]:
    """Load one split, one Example per meme.

    Example ids are str(id). fields: ocr (the meme's text) and class_name ("yes" for hateful,
    "no" otherwise, "" without a label). target: the label 0 or 1, or None without one.
    """
    path = data_file(data_dir, split_setting(settings, "file", split))
    images = ImageIndex(data_dir / optional_setting(settings, "images", split, default=""), path)
    examples = []
    seen: set[str] = set()
    for line_number, line in _read_lines(path):
        if not line.strip():
            continue
        record = _parse_line(line, path, line_number)
        where = f"line {line_number}"
        example_id = str(require_field(record, "id", path, where))
        where = f"line {line_number} (id {example_id})"
        image_file = require_field(record, "img", path, where)
        text = require_field(record, "text", path, where)
        label = record.get("label")
        if label is not None and label not in (0, 1):
            raise InputError(f"{path}: {where} has label {label!r}; expected 0 or 1")
        label = None if label is None else int(label)
        if example_id in seen:
            raise InputError(f"{path}: {where} repeats id {example_id}; ids must be unique")
        seen.add(example_id)

        image = images.ref(example_id, image_file, f"id {example_id}")
        fields = {"ocr": text, "class_name": "" if label is None else LABEL_NAMES[label]}
        examples.append(Example(id=example_id, image=image, fields=fields, target=label))
    images.check()

    logger.info("loaded %d memes of split %s from %s", len(examples), split, path)
    return examples


def _read_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    return list(enumerate(text.splitlines(), start=1))


def _parse_line(line: str, path: Path, line_number: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path}: invalid JSON on line {line_number} column {error.colno} ({error.msg})"
        ) from None
