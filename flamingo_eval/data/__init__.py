"""Loaders: one per official file layout, all returning lists of `Example`.

A task file names its loader (`data.loader`) and gives each split's loader settings
(`data.splits`); `load_split` looks both up. `data.hf` describes the same splits as a Hugging
Face `datasets` source instead, used with `source="hf"`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from flamingo_eval.data.example import Example, ImageRef
from flamingo_eval.data.files import SettingError
from flamingo_eval.data.hateful_memes import load_hateful_memes
from flamingo_eval.data.hf import load_hf_split
from flamingo_eval.data.imagefolder import class_names as imagefolder_class_names
from flamingo_eval.data.imagefolder import load_imagefolder
from flamingo_eval.data.karpathy import load_karpathy
from flamingo_eval.data.vqa import load_vqa
from flamingo_eval.errors import InputError
from flamingo_eval.registry import TaskSpec

# A loader takes a split's settings from the task file, the data folder and the split's name.
Loader = Callable[[dict[str, Any], Path, str], list[Example]]

LOADERS: dict[str, Loader] = {
    "vqa": load_vqa,
    "karpathy": load_karpathy,
    "imagefolder": load_imagefolder,
    "hateful_memes": load_hateful_memes,
}

SOURCES = ("files", "hf")


def load_split(task: TaskSpec, split: str, data_dir: Path, source: str = "files") -> list[Example]:
    """Load one split of a task from its files (`source="files"`) or from `datasets` ("hf")."""
    if split not in task.data.splits:
        known = ", ".join(task.data.splits)
        raise InputError(f"task {task.name}: unknown split {split!r}; the task file has {known}")
    data_dir = Path(data_dir)
    if source == "hf":
        return load_hf_split(task, split, data_dir)
    if source != "files":
        raise InputError(f"unknown data source {source!r}; expected one of {', '.join(SOURCES)}")

    loader = LOADERS.get(task.data.loader)
    if loader is None:
        raise InputError(
            f"task {task.name}: unknown loader {task.data.loader!r}; "
            f"expected one of {', '.join(LOADERS)}"
        )
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: data folder not found; check --data-dir")
    settings = task.data.splits[split] or {}
    if not isinstance(settings, dict):
        raise InputError(f"task {task.name}: data.splits.{split} must be a mapping of loader settings")
    try:
        return loader(settings, data_dir, split)
    except SettingError as error:
        raise InputError(f"{task.source_path}: {error}") from None


def load_class_names(task: TaskSpec, data_dir: Path) -> list[str]:
    """Return a ranking task's class names in class index order.

    `ranking.class_names` is an inline list, or "imagenet": the names in the data folder's
    classnames.txt (checked against the eval split's class folders when that folder exists),
    else ImageNet's 1000 names from open_flamingo.
    """
    if task.ranking is None:
        raise InputError(f"task {task.name}: class names exist only for ranking tasks")
    names = task.ranking.class_names
    if isinstance(names, list):
        return [str(name) for name in names]
    if names != "imagenet":
        raise InputError(
            f"task {task.name}: unknown class name list {names!r}; give a list or 'imagenet'"
        )

    data_dir = Path(data_dir)
    split = task.data.eval_split
    settings = task.data.splits.get(split) or {}
    folder = data_dir / str(settings.get("folder", split))
    folder_count = None
    if folder.is_dir():
        folder_count = sum(
            1 for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith(".")
        )
    return imagefolder_class_names(settings, data_dir, split, folder_count)


__all__ = ["LOADERS", "Example", "ImageRef", "load_class_names", "load_split"]
