"""Helpers shared by the file loaders: reading JSON, split settings and image paths.

Every failure raises `InputError` with a one-line message that names the file and the field or id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from flamingo_eval.data.example import ImageRef
from flamingo_eval.errors import InputError


# The image existence check; tests replace it to load real annotation files without images.
file_exists: Callable[[Path], bool] = os.path.exists


class SettingError(InputError):
    """An invalid loader setting; `load_split` adds the task file's path to the message."""


def split_setting(settings: dict[str, Any], name: str, split: str, kind: type = str) -> Any:
    """Return a required setting of a split's loader settings."""
    if name not in settings or settings[name] is None:
        raise SettingError(f"data.splits.{split}: missing loader setting '{name}'")
    value = settings[name]
    if not isinstance(value, kind):
        raise SettingError(
            f"data.splits.{split}: loader setting '{name}' must be a {kind.__name__}, "
            f"not {type(value).__name__}"
        )
    return value


def optional_setting(
    settings: dict[str, Any], name: str, split: str, kind: type = str, default: Any = None
) -> Any:
    """Return an optional setting of a split's loader settings, or `default` when absent."""
    if settings.get(name) is None:
        return default
    return split_setting(settings, name, split, kind)


def data_file(data_dir: Path, relative: str) -> Path:
    """Return an existing file below the data folder, raising InputError when it is missing."""
    path = data_dir / relative
    if not path.is_file():
        raise InputError(f"{path}: file not found; check --data-dir and the task's split settings")
    return path


def data_folder(data_dir: Path, relative: str) -> Path:
    """Return an existing folder below the data folder, raising InputError when it is missing."""
    path = data_dir / relative
    if not path.is_dir():
        raise InputError(
            f"{path}: folder not found; check --data-dir and the task's split settings"
        )
    return path


def read_json(path: Path, object_pairs_hook: Callable[[list], Any] | None = None) -> Any:
    """Parse a JSON file, raising InputError with the position of a syntax error."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle, object_pairs_hook=object_pairs_hook)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path}: invalid JSON at line {error.lineno} column {error.colno} ({error.msg})"
        ) from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def require_field(record: Any, name: str, path: Path, where: str) -> Any:
    """Return `record[name]`, raising InputError naming the file and record when it is absent."""
    if not isinstance(record, dict):
        raise InputError(f"{path}: {where} is a {type(record).__name__}, expected a JSON object")
    if name not in record:
        raise InputError(f"{path}: {where} has no field '{name}'")
    return record[name]


def require_list(document: Any, name: str, path: Path) -> list:
    """Return the list stored under a top-level key of a JSON document."""
    if not isinstance(document, dict) or not isinstance(document.get(name), list):
        raise InputError(f"{path}: expected a JSON object with a list under '{name}'")
    return document[name]


class ImageIndex:
    """The `ImageRef`s of one split, one per image, with a check that each file exists.

    Examples that show the same image share one ImageRef, which keeps large splits small in
    memory. The existence check is eager, so a missing image stops the run before any model
    work. The error names the first missing file and counts the others.
    """

    def __init__(self, folder: Path, source: Path):
        self.folder = folder
        self.source = source
        self._refs: dict[str, ImageRef] = {}
        self._missing: list[tuple[Path, str]] = []

    def ref(self, key: str, relative: str, item: str) -> ImageRef:
        """Return the ImageRef for `key`, whose file is `relative` below the image folder.

        `item` names the record that refers to the image (for example "question_id 5") in the
        error raised by `check`.
        """
        image = self._refs.get(key)
        if image is None:
            path = self.folder / relative
            if not file_exists(path):
                self._missing.append((path, item))
            image = ImageRef(key=key, path=path)
            self._refs[key] = image
        return image

    def check(self) -> None:
        """Raise InputError when any referenced image file is missing."""
        if not self._missing:
            return
        path, item = self._missing[0]
        more = len(self._missing) - 1
        also = f" ({more} more images are missing)" if more else ""
        raise InputError(
            f"{path}: image file not found for {item} in {self.source}{also}; "
            "check --data-dir and the split's image folder and file name pattern"
        )
