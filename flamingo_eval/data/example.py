"""The record every loader returns, and lazy references to images."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image, UnidentifiedImageError

from flamingo_eval.errors import InputError


@dataclass(frozen=True)
class ImageRef:
    """A lazy reference to one image: a file path, or bytes fetched on demand.

    `key` identifies the picture across splits (two examples showing the same picture share it),
    so RICES can exclude a query's own image. `source_id` identifies where the pixels come from
    (a dataset row) when there is no path. `cache_key` combines them into the key under which
    vision features are cached, which stays unique even when two splits reuse an image id.
    """

    key: str
    path: Path | None = None
    load_bytes: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)
    source_id: str | None = None

    @property
    def cache_key(self) -> str:
        if self.path is not None:
            return str(self.path)
        return f"{self.source_id}|{self.key}" if self.source_id is not None else self.key

    def open(self) -> Image.Image:
        """Open the image as RGB, raising InputError for a missing or unreadable file."""
        try:
            if self.path is not None:
                with Image.open(self.path) as image:
                    return image.convert("RGB")
            if self.load_bytes is None:
                raise InputError(f"image {self.key}: no path and no bytes to load it from")
            with Image.open(io.BytesIO(self.load_bytes())) as image:
                return image.convert("RGB")
        except FileNotFoundError:
            raise InputError(
                f"{self.path}: image file not found; check --data-dir and the task's image folder"
            ) from None
        except (UnidentifiedImageError, OSError) as error:
            where = self.path if self.path is not None else f"image {self.key}"
            raise InputError(f"{where}: cannot read image ({error}); replace the file") from None


@dataclass(frozen=True)
class Example:
    """One item of a split.

    `id` is the sample id used in predictions and metrics (question id, image id, meme id, ...),
    always a string. `fields` holds the text a prompt template may use (question, ocr, ...);
    `target` holds what metrics compare against: the annotation's answer records for VQA, the
    reference captions for captioning, the class index for classification, or None when the
    split has no annotations (test-dev submissions).
    """

    id: str
    image: ImageRef
    fields: dict[str, Any]
    target: Any = None
