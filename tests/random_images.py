"""Random RGB test images written as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from flamingo_eval.data.example import ImageRef


def write_random_images(folder: Path, count: int, size: int, seed: int) -> list[ImageRef]:
    """Write `count` random `size` x `size` PNG images into `folder`, keyed image0, image1, ..."""
    generator = np.random.default_rng(seed)
    refs = []
    for index in range(count):
        path = folder / f"{index}.png"
        Image.fromarray(generator.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        refs.append(ImageRef(key=f"image{index}", path=path))
    return refs
