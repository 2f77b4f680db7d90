"""Images loaded in DataLoader worker processes (`--image-workers`): the same pixels and the same
predictions as loading in this process, in other processes, without deadlock or lost errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flamingo_eval.data.example import ImageRef
from flamingo_eval.errors import InputError
from flamingo_eval.evaluate import evaluate
from flamingo_eval.models.media_cache import PixelPrefetcher
from flamingo_eval.registry import load_task
from flamingo_eval.runner import RunOptions
from random_images import write_random_images


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)


def process_id(image: Image.Image) -> torch.Tensor:
    return torch.tensor([os.getpid()])


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[ImageRef]:
    return write_random_images(tmp_path_factory.mktemp("worker_images"), count=12, size=16, seed=3)


def test_planned_pixels_equal_direct(images):
    prefetcher = PixelPrefetcher(to_tensor)
    prefetcher.plan(images, workers=2)
    planned = torch.cat([prefetcher.pixels(images[:5]), prefetcher.pixels(images[5:])])
    direct = torch.stack([to_tensor(image.open()) for image in images])

    assert torch.equal(planned, direct)


def test_planned_images_load_in_other_processes(images):
    prefetcher = PixelPrefetcher(process_id)
    prefetcher.plan(images, workers=2)
    pids = set(prefetcher.pixels(images).flatten().tolist())

    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2


def test_batch_asked_in_other_order_does_not_block(images):
    # At most 4 images ahead, and each batch of 4 is asked for in reverse order.
    prefetcher = PixelPrefetcher(to_tensor)
    prefetcher.plan(images, workers=2, max_ahead=4)
    batches = [images[start : start + 4][::-1] for start in range(0, len(images), 4)]
    results = [prefetcher.pixels(batch) for batch in batches]

    for batch, result in zip(batches, results):
        assert torch.equal(result, torch.stack([to_tensor(image.open()) for image in batch]))


def test_missing_file_raises_input_error(images, tmp_path):
    missing = ImageRef(key="missing", path=tmp_path / "missing.png")
    prefetcher = PixelPrefetcher(to_tensor)
    prefetcher.plan([images[0], missing], workers=1)
    prefetcher.pixels([images[0]])

    with pytest.raises(InputError, match="missing.png: image file not found"):
        prefetcher.pixels([missing])


def test_stopped_plan_loads_on_demand(images):
    prefetcher = PixelPrefetcher(to_tensor)
    prefetcher.plan(images, workers=1, max_ahead=2)
    prefetcher.stop_plan()
    pixels = prefetcher.pixels(images)

    assert torch.equal(pixels, torch.stack([to_tensor(image.open()) for image in images]))


@pytest.mark.parametrize("task_name", ["okvqa", "imagenet"])
def test_run_with_workers_equals_run_without(tiny_model, task_sample, tmp_path, monkeypatch, task_name):
    planned = []
    original_plan = PixelPrefetcher.plan

    def recording_plan(self, images, workers, **kwargs):
        planned.append((len(images), workers))
        return original_plan(self, images, workers, **kwargs)

    monkeypatch.setattr(PixelPrefetcher, "plan", recording_plan)

    def predictions(workers: int) -> list[str]:
        tiny_model.media_cache.clear()
        output = tmp_path / f"workers{workers}"
        evaluate(
            tiny_model,
            [load_task(task_name)],
            RunOptions(shots=[4], num_samples=16, image_workers=workers),
            data_root=task_sample(task_name),
            output_dir=output,
            command=["pytest"],
        )
        return (output / "predictions.jsonl").read_text().splitlines()

    with_workers = predictions(2)
    assert planned and all(count > 0 and workers == 2 for count, workers in planned)
    assert with_workers == predictions(0)
