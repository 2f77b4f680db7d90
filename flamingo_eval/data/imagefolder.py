"""Loader for ImageNet-style class folders: <data>/<folder>/<wnid>/<image file>.

The class index of an image is the position of its class folder among the sorted folder names,
which for ImageNet's WordNet ids is the standard 0..999 label order. Split settings:

- `folder`: the split's folder, relative to the data folder (default: the split's name).
- `class_names`: a text file with one class name per line, in class index order, relative to
  the data folder (default "classnames.txt"). Without that file the folder must hold ImageNet's
  1000 classes, named by OpenFlamingo's IMAGENET_CLASSNAMES list.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from flamingo_eval.data.example import Example, ImageRef
from flamingo_eval.data.files import data_folder, optional_setting
from flamingo_eval.errors import InputError

logger = logging.getLogger(__name__)

CLASS_NAMES_FILE = "classnames.txt"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jpe"}


def load_imagefolder(settings: dict[str, Any], data_dir: Path, split: str) -> list[Example]:
    """Load one split of class folders, one Example per image file.

    Example ids are "<wnid>/<file stem>". fields: class_name. target: the class index.
    Hidden folders and files (".name") and files without an image suffix are skipped.
    """
    folder = data_folder(data_dir, optional_setting(settings, "folder", split, default=split))
    class_folders = sorted(
        entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith(".")
    )
    if not class_folders:
        raise InputError(f"{folder}: no class folders found; expected <split>/<class id>/<image>")
    names = class_names(settings, data_dir, split, len(class_folders))

    examples = []
    for index, wnid in enumerate(class_folders):
        files = sorted(entry.name for entry in os.scandir(folder / wnid) if entry.is_file())
        for name in files:
            stem, suffix = os.path.splitext(name)
            if name.startswith(".") or suffix.lower() not in IMAGE_SUFFIXES:
                continue
            example_id = f"{wnid}/{stem}"
            image = ImageRef(key=example_id, path=folder / wnid / name)
            fields = {"class_name": names[index]}
            examples.append(Example(id=example_id, image=image, fields=fields, target=index))

    _check_unique_ids(examples, folder)
    logger.info("loaded %d images in %d classes from %s", len(examples), len(class_folders), folder)
    return examples


def class_names(settings: dict[str, Any], data_dir: Path, split: str, folder_count: int | None) -> list[str]:
    """Return the class names in class index order, checked against the number of class folders.

    `folder_count` None skips that check.
    """
    relative = optional_setting(settings, "class_names", split, default=CLASS_NAMES_FILE)
    path = data_dir / relative
    if path.is_file():
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        names = [name for name in names if name]
        source = str(path)
    else:
        names = imagenet_class_names()
        source = f"ImageNet's class list (no {path})"

    if folder_count is not None and folder_count != len(names):
        raise InputError(
            f"{data_dir}: split {split!r} has {folder_count} class folders, but {source} has "
            f"{len(names)} names; give one name per class folder in {CLASS_NAMES_FILE}"
        )
    return names


def imagenet_class_names() -> list[str]:
    """Return ImageNet's 1000 class names from the installed open_flamingo package."""
    try:
        from open_flamingo.eval.classification_utils import IMAGENET_CLASSNAMES
    except ImportError as error:
        raise InputError(
            f"ImageNet class names need the open_flamingo package ({error}); install it or give "
            f"a {CLASS_NAMES_FILE} in the data folder"
        ) from None
    return list(IMAGENET_CLASSNAMES)


def _check_unique_ids(examples: list[Example], folder: Path) -> None:
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise InputError(
                f"{folder}: two files in one class folder share the name {example.id}; "
                "rename one of them"
            )
        seen.add(example.id)
