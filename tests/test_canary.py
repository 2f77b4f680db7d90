"""End-to-end guards with the canary checkpoints: the trained tiny model scores in its band on
the generated sample, and misaligned images and prompts inside a batch push it below the band.

The bands sit a margin below the scores measured when the checkpoints were trained (recorded in
docs/benchmarks/canary.md), so they catch bugs without failing on small numeric differences.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from flamingo_eval.errors import InputError
from flamingo_eval.evaluate import evaluate
from flamingo_eval.models.base import Request
from flamingo_eval.models.canary import CANARY_CHECKPOINTS, load_canary, load_canary_preset
from flamingo_eval.models.options import ModelOptions
from flamingo_eval.models.tiny import build_tiny
from flamingo_eval.registry import load_task
from flamingo_eval.runner import RunOptions

SHOTS = 4
NUM_SAMPLES = 32
# Lower ends of the canary's score bands on NUM_SAMPLES items (trial seed 42) of the samples'
# eval splits. Measured when the checkpoint was trained: OK-VQA 59.4 aligned, 34.4 with rotated
# images and 25.0 for canary-early. ImageNet top-1 93.8 aligned, 3.1 rotated and 9.4 for
# canary-early (10 classes, chance 10).
OKVQA_BAND = 45.0
IMAGENET_BAND = 75.0


@pytest.fixture(scope="module")
def canary():
    return load_canary("canary")


@pytest.fixture(scope="module")
def canary_data(okvqa_dir, sample_root) -> Path:
    """The sample root with okvqa/ and imagenet/ sub-folders, as `evaluate` resolves them."""
    from flamingo_eval.sample_data import write_sample

    write_sample("imagenet", sample_root / "imagenet", seed=0)
    assert okvqa_dir == sample_root / "okvqa"
    return sample_root


def run_scores(model, data_root: Path, output_dir: Path, request_hook=None) -> dict[str, float]:
    summary, _ = evaluate(
        model,
        [load_task("okvqa"), load_task("imagenet")],
        RunOptions(shots=[SHOTS], num_samples=NUM_SAMPLES),
        data_root=data_root,
        output_dir=output_dir,
        command=["pytest"],
        request_hook=request_hook,
    )
    rows = summary.set_index(["task", "metric"])["mean"]
    return {"okvqa": float(rows[("okvqa", "vqa_accuracy")]), "imagenet": float(rows[("imagenet", "top1")])}


def rotate_images(requests: list[Request]) -> list[Request]:
    """Give each request the images of the next request in the batch (the last gets the first's)."""
    if len(requests) < 2:
        return requests
    images = [request.images for request in requests]
    rotated = images[1:] + images[:1]
    return [Request(prompt=request.prompt, images=own) for request, own in zip(requests, rotated)]


@pytest.fixture(scope="module")
def aligned_scores(canary, canary_data, tmp_path_factory) -> dict[str, float]:
    return run_scores(canary, canary_data, tmp_path_factory.mktemp("runs") / "aligned")


def test_canary_scores_in_band(aligned_scores):
    assert aligned_scores["okvqa"] >= OKVQA_BAND
    assert aligned_scores["imagenet"] >= IMAGENET_BAND


def test_early_checkpoint_below_band(canary_data, tmp_path):
    scores = run_scores(load_canary("canary-early"), canary_data, tmp_path / "early")
    assert scores["okvqa"] < OKVQA_BAND
    assert scores["imagenet"] < IMAGENET_BAND


def test_misaligned_images_fall_below_band(canary, canary_data, tmp_path):
    scores = run_scores(canary, canary_data, tmp_path / "misaligned", request_hook=rotate_images)
    assert scores["okvqa"] < OKVQA_BAND
    assert scores["imagenet"] < IMAGENET_BAND


def test_rotate_images_keeps_prompts():
    first = Request(prompt="a", images=("x",))
    second = Request(prompt="b", images=("y", "z"))
    rotated = rotate_images([first, second])
    assert [request.prompt for request in rotated] == ["a", "b"]
    assert [request.images for request in rotated] == [("y", "z"), ("x",)]


@pytest.mark.parametrize("name", sorted(CANARY_CHECKPOINTS))
def test_checkpoint_contains_full_state_dict(name):
    model, _, _ = build_tiny()
    state = load_file(str(CANARY_CHECKPOINTS[name]))
    assert set(state) == set(model.state_dict())
    assert CANARY_CHECKPOINTS[name].stat().st_size <= 10 * 1024 * 1024


def test_identity_names_checkpoint(canary):
    identity = canary.identity()
    assert identity["name"] == "canary"
    assert identity["checkpoint"]["path"].endswith("canary.safetensors")
    assert len(identity["checkpoint"]["sha256"]) == 64


def test_early_checkpoint_differs(canary):
    early = load_canary("canary-early")
    assert early.identity()["checkpoint"]["sha256"] != canary.identity()["checkpoint"]["sha256"]


def test_unknown_canary_name_rejected():
    with pytest.raises(InputError, match="unknown canary checkpoint 'canary-late'"):
        load_canary("canary-late")


def test_preset_rejects_path_overrides():
    with pytest.raises(InputError, match="--checkpoint weights.pt: its weights"):
        load_canary_preset("canary", ModelOptions(checkpoint="weights.pt"))
