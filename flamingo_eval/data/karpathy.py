"""Loader for Karpathy's caption splits (dataset_coco.json, dataset_flickr30k.json).

The file lists every image once, with its Karpathy split ("train", "restval", "val", "test")
and its reference sentences. Split settings:

- `file`: the dataset_*.json file, relative to the data folder.
- `karpathy_splits`: the Karpathy splits to keep, e.g. [test]. OpenFlamingo draws its
  demonstrations from [train] only, without restval.
- `images`: image folder, relative to the data folder ("" or absent: the data folder itself).
  An image's path is <images>/<filepath>/<filename>, where COCO records carry `filepath`
  ("train2014", "val2014") and Flickr30k records do not.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any

from flamingo_eval.data.example import Example
from flamingo_eval.data.files import (
    ImageIndex,
    data_file,
    optional_setting,
    read_json,
    require_field,
    require_list,
    split_setting,
)
from flamingo_eval.errors import InputError

logger = logging.getLogger(__name__)


def load_karpathy(settings: dict[str, Any], data_dir: Path, split: str) -> list[Example]:
    """Load the images of the selected Karpathy splits, one Example per image.

    Example ids are str(cocoid) when the record has a cocoid (COCO), else the file name's stem
    (Flickr30k). fields: caption (the first reference's "raw" sentence) and image_id. target:
    every reference's "raw" sentence.
    """
    path = data_file(data_dir, split_setting(settings, "file", split))
    karpathy_splits = split_setting(settings, "karpathy_splits", split, list)
    image_folder = data_dir / optional_setting(settings, "images", split, default="")

    records = require_list(read_json(path), "images", path)
    images = ImageIndex(image_folder, path)
    examples = []
    seen: set[str] = set()
    for index, record in enumerate(records):
        filename = require_field(record, "filename", path, f"images[{index}]")
        where = f"image {filename}"
        if require_field(record, "split", path, where) not in karpathy_splits:
            continue

        image_id = record.get("cocoid", PurePosixPath(filename).stem)
        example_id = str(image_id)
        if example_id in seen:
            raise InputError(f"{path}: duplicate image id {example_id}; ids must be unique")
        seen.add(example_id)

        captions = _raw_captions(require_field(record, "sentences", path, where), path, where)
        relative = str(PurePosixPath(record.get("filepath", "")) / filename)
        image = images.ref(example_id, relative, f"image id {example_id}")
        fields = {"caption": captions[0], "image_id": image_id}
        examples.append(Example(id=example_id, image=image, fields=fields, target=captions))
    images.check()

    if not examples:
        raise InputError(f"{path}: no image is in the Karpathy splits {karpathy_splits} (split {split!r})")
    logger.info("loaded %d images of split %s from %s", len(examples), split, path)
    return examples


def _raw_captions(sentences: Any, path: Path, where: str) -> list[str]:
    if not isinstance(sentences, list) or not sentences:
        raise InputError(f"{path}: {where} has no sentences; expected a non-empty list")
    captions = []
    for index, sentence in enumerate(sentences):
        raw = require_field(sentence, "raw", path, f"{where}, sentences[{index}]")
        if not isinstance(raw, str):
            raise InputError(f"{path}: {where}, sentences[{index}] has a non-string 'raw'")
        captions.append(raw)
    return captions
