"""Deterministic synthetic sample data for every built-in task, in each benchmark's own layout.

The images are coloured shapes. Every answer, caption and label follows from what its image
shows (and, for Hateful Memes, from its text), so a model can learn them from the train splits.
The same seed writes byte-identical files (with the same Pillow version).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from flamingo_eval.errors import InputError
from flamingo_eval.sample_data.captions import write_coco, write_flickr30k
from flamingo_eval.sample_data.classification import write_hateful_memes, write_imagenet
from flamingo_eval.sample_data.coco_vqa import write_okvqa, write_vqav2
from flamingo_eval.sample_data.vqa_format import write_textvqa, write_vizwiz

logger = logging.getLogger(__name__)

_WRITERS: dict[str, Callable[[Path, int], None]] = {
    "okvqa": write_okvqa,
    "vqav2": write_vqav2,
    "textvqa": write_textvqa,
    "vizwiz": write_vizwiz,
    "coco": write_coco,
    "flickr30k": write_flickr30k,
    "imagenet": write_imagenet,
    "hateful_memes": write_hateful_memes,
}
SAMPLE_TASKS: tuple[str, ...] = tuple(_WRITERS)


def write_sample(task: str, out_dir: Path, seed: int = 0) -> Path:
    """Write the sample data of `task` into `out_dir` (created if missing) and return `out_dir`.

    Files of the layout that already exist are overwritten; other files in `out_dir` are left.
    """
    writer = _WRITERS.get(task)
    if writer is None:
        raise InputError(
            f"unknown task {task!r} for sample data; expected one of: {', '.join(SAMPLE_TASKS)}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    logger.info("writing %s sample data (seed %d) to %s", task, seed, out_dir)
    writer(out_dir, seed)
    return out_dir
