"""On-disk cache of RICES image features: a safetensors file and a JSON manifest beside it.

The features file contains one L2-normalised row per distinct image key (many VQA questions share
an image). The manifest records what the rows were computed from: encoder, pretrained tag,
preprocessing, a fingerprint of the examples, the item ids and each item's row. A cache whose
manifest differs from what a run expects is rebuilt with a warning, or rejected in strict mode.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from flamingo_eval.data.example import Example
from flamingo_eval.errors import InputError
from flamingo_eval.rices.encoder import (
    ImageEncoder,
    LazyImageEncoder,
    compute_image_features,
    describe_preprocess,
)

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
FEATURES_TENSOR = "features"
# Manifest fields compared before a cache is used, in this order; the first difference is reported.
COMPARED_FIELDS = (
    "format_version",
    "encoder",
    "pretrained",
    "preprocess",
    "dataset_fingerprint",
    "item_ids",
    "dtype",
    "shape",
)
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def default_feature_cache_dir() -> Path:
    """Return `$XDG_CACHE_HOME/flamingo-eval/features` (`~/.cache/...` when the variable is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "flamingo-eval" / "features"


@dataclass(frozen=True)
class CachePaths:
    """The features file and the manifest of one cache entry."""

    features: Path
    manifest: Path


def cache_paths(cache_dir: Path, name: str, encoder: str, pretrained: str | None) -> CachePaths:
    """Name a cache entry `<name>.<encoder>-<pretrained>` inside `cache_dir`."""
    stem = f"{name}.{encoder}-{pretrained or 'random'}"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)
    cache_dir = Path(cache_dir)
    return CachePaths(cache_dir / f"{stem}.safetensors", cache_dir / f"{stem}.json")


def dataset_fingerprint(examples: list[Example]) -> str:
    """Hash the ordered item ids, image keys, and image file names and sizes (sha256 hex).

    The file name and size represent the image content, so replacing an image by a file of
    another size changes the fingerprint. A file replaced by one of equal size does not.
    """
    digest = hashlib.sha256()
    sizes: dict[Path, int] = {}
    for example in examples:
        path = example.image.path
        file_part = ""
        if path is not None:
            if path not in sizes:
                try:
                    sizes[path] = path.stat().st_size
                except OSError:
                    sizes[path] = -1
            file_part = f"{path.name}:{sizes[path]}"
        digest.update(f"{example.id}\x1f{example.image.key}\x1f{file_part}\n".encode("utf-8"))
    return digest.hexdigest()


def distinct_image_rows(examples: list[Example]) -> tuple[list[str], list[int]]:
    """Return the distinct image keys in order of first use, and each example's row among them."""
    rows_by_key: dict[str, int] = {}
    item_rows = []
    for example in examples:
        row = rows_by_key.setdefault(example.image.key, len(rows_by_key))
        item_rows.append(row)
    return list(rows_by_key), item_rows


def expected_manifest(
    examples: list[Example],
    encoder_name: str,
    pretrained: str | None,
    preprocess: str,
    dtype: str,
    dim: int | None,
) -> dict[str, Any]:
    """Build the manifest a cache must match; `dim` None leaves the feature width unchecked."""
    image_keys, item_rows = distinct_image_rows(examples)
    return {
        "format_version": CACHE_FORMAT_VERSION,
        "encoder": encoder_name,
        "pretrained": pretrained,
        "preprocess": preprocess,
        "dataset_fingerprint": dataset_fingerprint(examples),
        "item_ids": [example.id for example in examples],
        "image_keys": image_keys,
        "item_rows": item_rows,
        "dtype": dtype,
        "shape": [len(image_keys), dim],
    }


def first_difference(stored: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """Return the first compared manifest field whose stored value differs, or None."""
    for field in COMPARED_FIELDS:
        stored_value = stored.get(field)
        expected_value = expected.get(field)
        if field == "shape" and isinstance(stored_value, list) and isinstance(expected_value, list):
            # A None width in the expected shape accepts any width.
            expected_value = [
                stored_part if expected_part is None else expected_part
                for stored_part, expected_part in zip(stored_value, expected_value)
            ]
        if stored_value != expected_value:
            return field
    return None


def _describe_values(field: str, stored: Any, expected: Any) -> str:
    if field == "item_ids":
        return f"cached {len(stored or [])} ids, expected {len(expected)} (or a different order)"
    if field == "preprocess":
        return "the cached images were preprocessed differently"
    return f"cached {stored!r}, expected {expected!r}"


def write_feature_cache(paths: CachePaths, features: torch.Tensor, manifest: dict[str, Any]) -> None:
    """Write the features, then the manifest, each through a temporary file and a rename.

    The manifest is written last, so a cache interrupted while writing has none and is rebuilt.
    """
    paths.features.parent.mkdir(parents=True, exist_ok=True)
    paths.manifest.unlink(missing_ok=True)
    temporary_features = paths.features.with_suffix(".safetensors.tmp")
    save_file({FEATURES_TENSOR: features.contiguous()}, str(temporary_features))
    os.replace(temporary_features, paths.features)
    record = {
        **manifest,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "open_clip_version": _open_clip_version(),
    }
    temporary_manifest = paths.manifest.with_suffix(".json.tmp")
    temporary_manifest.write_text(json.dumps(record), encoding="utf-8")
    os.replace(temporary_manifest, paths.manifest)


def read_feature_cache(paths: CachePaths) -> tuple[dict[str, Any], torch.Tensor]:
    """Read a cache entry; raise InputError when a file is missing, unreadable or inconsistent."""
    try:
        manifest = json.loads(paths.manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{paths.manifest}: feature cache manifest not found") from None
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{paths.manifest}: unreadable feature cache manifest ({error})") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{paths.manifest}: feature cache manifest must be a JSON object")
    try:
        features = load_file(str(paths.features))[FEATURES_TENSOR]
    except FileNotFoundError:
        raise InputError(f"{paths.features}: feature cache file not found") from None
    except (OSError, SafetensorError, KeyError) as error:
        raise InputError(f"{paths.features}: unreadable feature cache ({error})") from None
    dtype_name = str(features.dtype).replace("torch.", "")
    if list(features.shape) != manifest.get("shape") or dtype_name != manifest.get("dtype"):
        raise InputError(
            f"{paths.features}: features are {dtype_name} {list(features.shape)} but the manifest "
            f"says {manifest.get('dtype')} {manifest.get('shape')}; delete both files to rebuild"
        )
    return manifest, features


def load_or_build_features(
    examples: list[Example],
    encoder_name: str,
    pretrained: str | None,
    cache_dir: Path,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    *,
    name: str,
    strict: bool = False,
    encoder: ImageEncoder | LazyImageEncoder | None = None,
    dtype: str = "float32",
    progress: bool = True,
) -> torch.Tensor:
    """Return one float32 feature row per example, from the cache entry `name` or built anew.

    A cache entry is used only when its manifest matches the examples, encoder, pretrained tag,
    preprocessing and storage dtype. Otherwise the features are computed and the entry is
    rewritten; with `strict=True` a missing, mismatching or unreadable entry raises InputError
    naming the field instead. `encoder` may be a loaded encoder, whose transform is then
    compared with the cached one, or a `LazyImageEncoder` (default: a new one) that loads only
    when features must be computed.

    NOTE: a random tower (`pretrained=None`) is identified by its name only, so its cache is
    reused whatever seed built it.
    """
    if not examples:
        raise InputError(f"feature cache {name}: no examples to embed")
    if dtype not in STORAGE_DTYPES:
        raise InputError(f"feature cache dtype {dtype!r} must be one of {', '.join(STORAGE_DTYPES)}")
    if encoder is not None and (encoder.name, encoder.pretrained) != (encoder_name, pretrained):
        raise ValueError(
            f"encoder {encoder.name} ({encoder.pretrained}) does not match the requested "
            f"{encoder_name} ({pretrained})"
        )
    if encoder is None:
        encoder = LazyImageEncoder(encoder_name, pretrained, device)
    paths = cache_paths(cache_dir, name, encoder_name, pretrained)
    preprocess = (
        encoder.preprocess_description
        if isinstance(encoder, ImageEncoder)
        else describe_preprocess(encoder_name, pretrained)
    )
    expected = expected_manifest(examples, encoder_name, pretrained, preprocess, dtype, dim=None)

    cached = _read_matching(paths, expected, strict)
    if cached is not None:
        logger.info("using cached features %s", paths.features)
        rows = cached
    else:
        if isinstance(encoder, LazyImageEncoder):
            encoder = encoder.get()
        rows = _build(paths, examples, encoder, expected, batch_size, dtype, progress, name)
    item_rows = torch.tensor(expected["item_rows"], dtype=torch.long)
    return rows.float().index_select(0, item_rows)


def _read_matching(paths: CachePaths, expected: dict[str, Any], strict: bool) -> torch.Tensor | None:
    """Return the cached rows when the entry exists and matches; None when it must be built."""
    if not paths.manifest.exists():
        if strict:
            raise InputError(
                f"{paths.manifest}: feature cache not found; build it with "
                "flamingo-eval cache-features, or run without strict cache checks"
            )
        return None
    try:
        stored, features = read_feature_cache(paths)
    except InputError as error:
        if strict:
            raise
        logger.warning("%s; rebuilding it", error)
        return None
    field = first_difference(stored, expected)
    if field is None:
        return features
    detail = _describe_values(field, stored.get(field), expected.get(field))
    message = f"{paths.manifest}: feature cache does not match in field '{field}' ({detail})"
    if strict:
        raise InputError(f"{message}; delete it or rebuild it with flamingo-eval cache-features")
    logger.warning("%s; rebuilding it", message)
    return None


def _build(
    paths: CachePaths,
    examples: list[Example],
    encoder: ImageEncoder,
    expected: dict[str, Any],
    batch_size: int,
    dtype: str,
    progress: bool,
    name: str,
) -> torch.Tensor:
    images_by_key = {}
    for example in examples:
        images_by_key.setdefault(example.image.key, example.image)
    images = [images_by_key[key] for key in expected["image_keys"]]
    logger.info("computing %s features of %d images with %s", name, len(images), encoder.name)
    features = compute_image_features(
        images, encoder, batch_size, progress=progress, description=f"RICES features {name}"
    )
    if encoder.preprocess_description != expected["preprocess"]:
        logger.warning(
            "the transform of %s differs from the one derived from open_clip's configs, so "
            "this cache will not match on later runs without the encoder loaded",
            encoder.name,
        )
    stored = features.to(STORAGE_DTYPES[dtype])
    manifest = {**expected, "preprocess": encoder.preprocess_description, "shape": list(stored.shape)}
    write_feature_cache(paths, stored, manifest)
    logger.info("wrote feature cache %s", paths.features)
    return stored


def _open_clip_version() -> str | None:
    try:
        return version("open_clip_torch")
    except PackageNotFoundError:
        return None
