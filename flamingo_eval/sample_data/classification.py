"""ImageNet and Hateful Memes samples: an ImageNet-style class folder tree and meme JSON lines."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from flamingo_eval.sample_data.files import EVAL_SIZE, TRAIN_SIZE, write_jsonl
from flamingo_eval.sample_data.scenes import (
    COLOURS,
    GRID,
    SHAPES,
    Scene,
    SceneObject,
    derived_rng,
    render,
    save_jpeg,
    save_png,
)

# Class name, colour and shape of each class. An image shows its class's shape once or twice.
IMAGENET_CLASSES = (
    ("tomato", "red", "circle"),
    ("lemon", "yellow", "circle"),
    ("lime", "green", "circle"),
    ("plum", "purple", "circle"),
    ("pyramid", "yellow", "triangle"),
    ("tent", "orange", "triangle"),
    ("pine tree", "green", "triangle"),
    ("kite", "blue", "diamond"),
    ("brick", "red", "square"),
    ("ice cube", "blue", "square"),
)
IMAGENET_TRAIN_PER_CLASS = 30
IMAGENET_VAL_PER_CLASS = 8

MEME_TEMPLATES = (
    "nobody likes {colour}",
    "{colour} is the best",
    "this is what {colour} looks like",
    "i only trust {colour}",
    "everything {colour} is great",
    "look at all this {colour}",
)


def write_imagenet(out_dir: Path, seed: int) -> None:
    """Write ImageNet's train/<wnid>/ and val/<wnid>/ folders and classnames.txt.

    The wnids n00000001, n00000002, ... sort in the order of classnames.txt, so line i of that
    file names class index i, the index an ImageFolder over sorted wnids assigns.
    """
    rng = derived_rng("imagenet", seed)
    class_count = len(IMAGENET_CLASSES)
    wnids = [f"n{index + 1:08d}" for index in range(class_count)]
    # ImageNet numbers its val images across all classes, so a class's numbers are not adjacent.
    val_count = class_count * IMAGENET_VAL_PER_CLASS
    val_numbers = iter(rng.sample(range(1, val_count + 1), val_count))
    for wnid, (_, colour, shape) in zip(wnids, IMAGENET_CLASSES):
        train_numbers = sorted(rng.sample(range(1, 20_000), IMAGENET_TRAIN_PER_CLASS))
        for number in train_numbers:
            path = out_dir / "train" / wnid / f"{wnid}_{number}.JPEG"
            save_jpeg(render(_class_scene(rng, colour, shape)), path)
        for _ in range(IMAGENET_VAL_PER_CLASS):
            path = out_dir / "val" / wnid / f"ILSVRC2012_val_{next(val_numbers):08d}.JPEG"
            save_jpeg(render(_class_scene(rng, colour, shape)), path)

    names = "".join(f"{name}\n" for name, _, _ in IMAGENET_CLASSES)
    (out_dir / "classnames.txt").write_bytes(names.encode("utf-8"))


def _class_scene(rng: random.Random, colour: str, shape: str) -> Scene:
    cells = rng.sample(_grid_cells(), rng.randint(1, 2))
    objects = tuple(
        SceneObject(
            colour=colour,
            shape=shape,
            row=row,
            column=column,
            scale=round(rng.uniform(0.6, 0.95), 3),
            dx=round(rng.uniform(-0.1, 0.1), 3),
            dy=round(rng.uniform(-0.1, 0.1), 3),
        )
        for row, column in cells
    )
    return Scene(background=rng.choice(["white", "gray", "black"]), objects=objects)


def write_hateful_memes(out_dir: Path, seed: int) -> None:
    """Write train.jsonl, dev_seen.jsonl and test_seen.jsonl with PNG images in img/.

    Each image shows shapes of one colour and each text names a colour. The label is 1 exactly
    when the two colours differ, so neither the image nor the text alone predicts it. Each split
    has as many label-1 memes as label-0 memes.
    """
    rng = derived_rng("hateful_memes", seed)
    splits = (("train", TRAIN_SIZE), ("dev_seen", EVAL_SIZE), ("test_seen", EVAL_SIZE))
    meme_ids = iter(rng.sample(range(10_000, 100_000), sum(size for _, size in splits)))
    for split, size in splits:
        labels = [index % 2 for index in range(size)]
        rng.shuffle(labels)
        records: list[dict[str, Any]] = []
        for label in labels:
            meme_id = next(meme_ids)
            image_colour = rng.choice(list(COLOURS))
            text_colour = image_colour
            if label == 1:
                text_colour = rng.choice([colour for colour in COLOURS if colour != image_colour])
            save_png(render(_meme_scene(rng, image_colour)), out_dir / "img" / f"{meme_id}.png")
            records.append(
                {
                    "id": meme_id,
                    "img": f"img/{meme_id}.png",
                    "label": label,
                    "text": rng.choice(MEME_TEMPLATES).format(colour=text_colour),
                }
            )
        write_jsonl(out_dir / f"{split}.jsonl", records)


def _meme_scene(rng: random.Random, colour: str) -> Scene:
    count = rng.randint(1, 2)
    cells = rng.sample(_grid_cells(), count)
    shapes = rng.sample(SHAPES, count)
    objects = tuple(
        SceneObject(
            colour=colour,
            shape=shape,
            row=row,
            column=column,
            scale=round(rng.uniform(0.6, 0.9), 3),
        )
        for shape, (row, column) in zip(shapes, cells)
    )
    return Scene(background=rng.choice(["white", "gray"]), objects=objects)


def _grid_cells() -> list[tuple[int, int]]:
    return [(row, column) for row in range(GRID) for column in range(GRID)]
