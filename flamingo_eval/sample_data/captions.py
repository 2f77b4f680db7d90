"""COCO and Flickr30k caption samples in Karpathy's split files (dataset_coco.json and
dataset_flickr30k.json), with five reference captions per image describing its shapes."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from flamingo_eval.sample_data.coco_vqa import COCO_MAX_IMAGE_ID
from flamingo_eval.sample_data.files import EVAL_SIZE, TRAIN_SIZE, write_json
from flamingo_eval.sample_data.scenes import (
    Scene,
    SceneObject,
    derived_rng,
    random_scene,
    render,
    save_jpeg,
    with_article,
)

CAPTIONS_PER_IMAGE = 5
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
CAPTION_TEMPLATES = (
    "A {background} picture with {objects}.",
    "{count} {shapes} on a plain {background} background.",
    "There is {placed}.",
    "An image showing {objects}.",
    "{objects_capital} drawn on {background}.",
    "A simple drawing of {objects} on a {background} background.",
)
# The phrase that places a shape in each (row, column) cell of the 3x3 grid.
PLACES = {
    (0, 0): "in the top left corner",
    (0, 1): "at the top",
    (0, 2): "in the top right corner",
    (1, 0): "on the left",
    (1, 1): "in the middle",
    (1, 2): "on the right",
    (2, 0): "in the bottom left corner",
    (2, 1): "at the bottom",
    (2, 2): "in the bottom right corner",
}


def scene_captions(scene: Scene, rng: random.Random) -> list[str]:
    """Return five different captions of the scene.

    The first always reads "<shapes in reading order> on a <background> background." so that
    the caption used for demonstrations has one predictable form.
    """
    in_reading_order = sorted(scene.objects, key=lambda obj: (obj.row, obj.column))
    shuffled = rng.sample(in_reading_order, len(in_reading_order))
    count = len(scene.objects)
    values = {
        "background": scene.background,
        "objects": _join([with_article(obj.name) for obj in shuffled]),
        "objects_capital": _join([with_article(obj.name) for obj in shuffled]).capitalize(),
        "count": NUMBER_WORDS[count].capitalize(),
        "shapes": "shape" if count == 1 else "shapes",
        "placed": _join([_placed(obj) for obj in in_reading_order]),
    }
    first_objects = _join([with_article(obj.name) for obj in in_reading_order]).capitalize()
    first = f"{first_objects} on a {scene.background} background."
    templates = rng.sample(CAPTION_TEMPLATES, CAPTIONS_PER_IMAGE - 1)
    others = [template.format(**values) for template in templates]
    return [first, *others]


def _placed(obj: SceneObject) -> str:
    return f"{with_article(obj.name)} {PLACES[(obj.row, obj.column)]}"


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _tokens(caption: str) -> list[str]:
    """Karpathy's tokens: lower-case words with punctuation removed."""
    return re.findall(r"[a-z0-9]+", caption.lower())


class _KarpathyWriter:
    """Collects image records with numbered sentences, as Karpathy's files number them."""

    def __init__(self) -> None:
        self.images: list[dict[str, Any]] = []
        self.next_sentence_id = 0

    def add(self, captions: list[str], split: str, fields: dict[str, Any]) -> None:
        image_index = len(self.images)
        sentence_ids = list(range(self.next_sentence_id, self.next_sentence_id + len(captions)))
        self.next_sentence_id += len(captions)
        sentences = [
            {
                "tokens": _tokens(caption),
                "raw": caption,
                "imgid": image_index,
                "sentid": sentence_id,
            }
            for caption, sentence_id in zip(captions, sentence_ids)
        ]
        self.images.append(
            {
                **fields,
                "sentids": sentence_ids,
                "imgid": image_index,
                "split": split,
                "sentences": sentences,
            }
        )


def _caption_scene(rng: random.Random) -> Scene:
    return random_scene(rng, min_objects=1, max_objects=3)


def write_coco(out_dir: Path, seed: int) -> None:
    """Write dataset_coco.json (Karpathy splits) and the images in train2014/ and val2014/.

    As in Karpathy's split, "train" images come from train2014 and "restval", "val" and "test"
    images from val2014.
    """
    rng = derived_rng("coco", seed)
    splits = (("train", "train2014", TRAIN_SIZE), ("restval", "val2014", EVAL_SIZE // 2),
              ("val", "val2014", EVAL_SIZE), ("test", "val2014", EVAL_SIZE))
    coco_ids = iter(rng.sample(range(1, COCO_MAX_IMAGE_ID + 1), sum(size for _, _, size in splits)))
    writer = _KarpathyWriter()
    for split, folder, size in splits:
        for _ in range(size):
            scene = _caption_scene(rng)
            coco_id = next(coco_ids)
            filename = f"COCO_{folder}_{coco_id:012d}.jpg"
            save_jpeg(render(scene), out_dir / folder / filename)
            writer.add(
                scene_captions(scene, rng),
                split,
                {"filepath": folder, "filename": filename, "cocoid": coco_id},
            )
    write_json(out_dir / "dataset_coco.json", {"images": writer.images, "dataset": "coco"})


def write_flickr30k(out_dir: Path, seed: int) -> None:
    """Write dataset_flickr30k.json (Karpathy splits) and the images in flickr30k_images/."""
    rng = derived_rng("flickr30k", seed)
    splits = (("train", TRAIN_SIZE), ("val", EVAL_SIZE), ("test", EVAL_SIZE))
    photo_ids = iter(rng.sample(range(10_000_000, 9_999_999_999), sum(size for _, size in splits)))
    writer = _KarpathyWriter()
    for split, size in splits:
        for _ in range(size):
            scene = _caption_scene(rng)
            filename = f"{next(photo_ids)}.jpg"
            save_jpeg(render(scene), out_dir / "flickr30k_images" / filename)
            writer.add(scene_captions(scene, rng), split, {"filename": filename})
    write_json(
        out_dir / "dataset_flickr30k.json", {"images": writer.images, "dataset": "flickr30k"}
    )
