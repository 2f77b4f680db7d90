"""Builders of tiny data folders for the loader tests (imported by the test modules here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image


def write_json(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def write_image(path: Path, color: tuple[int, int, int] = (200, 10, 10), size: int = 4) -> Path:
    """Write a small solid-colour image; the format follows the file suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path)
    return path


def examples_to_columns(examples, family: str) -> dict[str, list]:
    """Return the examples as columns under the default names of the `data.hf` mapping.

    Images become {"bytes", "path"} values of a datasets Image feature, with the file's bytes.
    """
    columns: dict[str, list] = {"id": [], "image": []}
    for example in examples:
        columns["id"].append(example.id)
        columns["image"].append({"bytes": example.image.path.read_bytes(), "path": None})
        if family == "vqa":
            columns.setdefault("image_id", []).append(example.fields["image_id"])
            columns.setdefault("question", []).append(example.fields["question"])
            columns.setdefault("answers", []).append(example.target)
        elif family == "karpathy":
            columns.setdefault("image_id", []).append(example.fields["image_id"])
            columns.setdefault("captions", []).append(example.target)
        elif family == "imagefolder":
            columns.setdefault("label", []).append(example.target)
        elif family == "hateful_memes":
            columns.setdefault("text", []).append(example.fields["ocr"])
            columns.setdefault("label", []).append(example.target)
    return columns
