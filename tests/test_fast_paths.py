"""The fast paths give the plain paths' results: shared-prefix class scores, each image
encoded once, length-sorted batches restored to input order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flamingo_eval.data.example import ImageRef
from flamingo_eval.models.base import Request
from random_images import write_random_images

DEMO = "<image>Question:What color is the square? Short answer:red<|endofchunk|>\n"
CLASSES = ["red", "blue square", "no", "a much longer class name with many tokens", "yes"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[ImageRef]:
    return write_random_images(tmp_path_factory.mktemp("fast_images"), count=8, size=64, seed=1)


def requests_of_mixed_length(images: list[ImageRef]) -> list[Request]:
    requests = []
    for index in range(6):
        shots = index % 3
        prompt = DEMO * shots + "<image>Question:What" + " is it" * index + "? Short answer:"
        requests.append(Request(prompt, tuple(images[:shots]) + (images[index + 2],)))
    return requests


@pytest.fixture
def model(tiny_model):
    tiny_model.media_cache.clear()
    yield tiny_model
    tiny_model.fast = True
    tiny_model.class_batch_size = 256
    tiny_model.media_cache.clear()


@pytest.mark.parametrize("class_batch_size", [256, 2])
def test_shared_prefix_equals_full_forward(model, images, class_batch_size):
    requests = requests_of_mixed_length(images)
    model.fast = False
    plain = model.rank(requests, CLASSES)
    model.fast = True
    model.class_batch_size = class_batch_size
    fast = model.rank(requests, CLASSES)
    for plain_row, fast_row in zip(plain, fast):
        assert fast_row == pytest.approx(plain_row, abs=1e-4)


def test_shared_prefix_unpadded_single_request(model, images):
    request = requests_of_mixed_length(images)[4]
    model.fast = False
    plain = model.rank([request], CLASSES)[0]
    model.fast = True
    assert model.rank([request], CLASSES)[0] == pytest.approx(plain, abs=1e-4)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_cached_media_same_generations(model, images, num_beams):
    requests = requests_of_mixed_length(images)
    model.fast = False
    plain = model.generate(requests, num_beams=num_beams, max_new_tokens=5)
    model.fast = True
    fast = model.generate(requests, num_beams=num_beams, max_new_tokens=5)
    assert [g.text for g in fast] == [g.text for g in plain]
    for a, b in zip(fast, plain):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5)


def test_each_distinct_image_encoded_once(model, images):
    requests = requests_of_mixed_length(images)
    distinct = {image.cache_key for request in requests for image in request.images}
    calls = []
    handle = model.model.vision_encoder.register_forward_hook(
        lambda module, inputs, output: calls.append(inputs[0].shape[0])
    )
    try:
        model.generate(requests, num_beams=3, max_new_tokens=3)
        model.generate(requests, num_beams=3, max_new_tokens=3)
        model.rank(requests, CLASSES)
    finally:
        handle.remove()
    assert sum(calls) == len(distinct)


def test_plain_path_encodes_per_beam(model, images):
    requests = requests_of_mixed_length(images)
    model.fast = False
    calls = []
    handle = model.model.vision_encoder.register_forward_hook(
        lambda module, inputs, output: calls.append(inputs[0].shape[0])
    )
    try:
        model.generate(requests, num_beams=3, max_new_tokens=3)
    finally:
        handle.remove()
    max_images = max(len(request.images) for request in requests)
    assert sum(calls) == 3 * len(requests) * max_images


def test_sorted_batches_restore_order(okvqa_dir, tmp_path):
    from flamingo_eval.cli import main

    arguments = ["--task", "okvqa", "--shots", "0,4", "--num-samples", "12", "--batch-size", "5",
                 "--data-dir", str(okvqa_dir)]
    assert main([*arguments, "--output-dir", str(tmp_path / "run")]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    journal = [json.loads(line) for line in (tmp_path / "run" / "journal.rank0.jsonl").read_text().splitlines()]

    from flamingo_eval.data import load_split
    from flamingo_eval.registry import load_task
    from flamingo_eval.samplers import draw_trial

    task = load_task("okvqa")
    trial = draw_trial(42, load_split(task, "val", okvqa_dir), load_split(task, "train", okvqa_dir), 12)
    expected_order = [example.id for example in trial.eval_examples]
    for shots in (0, 4):
        assert [r["sample_id"] for r in records if r["shots"] == shots] == expected_order
    # The journal holds the model's (length-sorted) order, which differs from the input order.
    assert [r["sample_id"] for r in journal if r["shots"] == 4] != expected_order
