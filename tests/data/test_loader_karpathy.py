"""Tests of the Karpathy caption loader (COCO and Flickr30k layouts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_builders import write_image, write_json

from flamingo_eval.data.karpathy import load_karpathy
from flamingo_eval.errors import InputError


def coco_record(cocoid, split: str, folder: str = "val2014") -> dict:
    filename = f"COCO_{folder}_{int(cocoid):012d}.jpg"
    return {
        "filepath": folder,
        "filename": filename,
        "imgid": 0,
        "split": split,
        "sentences": [
            {"tokens": ["a", "cat"], "raw": f"A cat number {cocoid}.", "imgid": 0, "sentid": 1},
            {"tokens": ["a", "pet"], "raw": f"A pet number {cocoid}.", "imgid": 0, "sentid": 2},
        ],
        "cocoid": cocoid,
    }


def make_coco_folder(root: Path, records: list[dict]) -> Path:
    write_json(root / "dataset_coco.json", {"images": records, "dataset": "coco"})
    for record in records:
        write_image(root / record["filepath"] / record["filename"])
    return root


def flickr_record(stem: str, split: str) -> dict:
    return {
        "filename": f"{stem}.jpg",
        "imgid": 0,
        "split": split,
        "sentids": [0, 1],
        "sentences": [{"raw": f"A dog {stem}.", "tokens": []}, {"raw": f"A puppy {stem}.", "tokens": []}],
    }


def test_karpathy_coco_test_split(tmp_path):
    records = [
        coco_record(1, "test"),
        coco_record(2, "train", "train2014"),
        coco_record(3, "restval"),
        coco_record(4, "test"),
    ]
    make_coco_folder(tmp_path, records)
    settings = {"file": "dataset_coco.json", "karpathy_splits": ["test"]}

    examples = load_karpathy(settings, tmp_path, "test")

    assert [example.id for example in examples] == ["1", "4"]
    first = examples[0]
    assert first.fields == {"caption": "A cat number 1.", "image_id": 1}
    assert first.target == ["A cat number 1.", "A pet number 1."]
    assert first.image.key == "1"
    assert first.image.path == tmp_path / "val2014" / "COCO_val2014_000000000001.jpg"
    assert first.image.open().size == (4, 4)


def test_karpathy_train_excludes_restval(tmp_path):
    records = [coco_record(2, "train", "train2014"), coco_record(3, "restval")]
    make_coco_folder(tmp_path, records)

    examples = load_karpathy({"file": "dataset_coco.json", "karpathy_splits": ["train"]}, tmp_path, "train")

    assert [example.id for example in examples] == ["2"]


def test_karpathy_string_and_integer_ids(tmp_path):
    records = [coco_record(7, "test"), coco_record("8", "test")]
    make_coco_folder(tmp_path, records)

    examples = load_karpathy({"file": "dataset_coco.json", "karpathy_splits": ["test"]}, tmp_path, "test")

    assert [example.id for example in examples] == ["7", "8"]
    assert [example.image.key for example in examples] == ["7", "8"]
    assert [example.fields["image_id"] for example in examples] == [7, "8"]


def test_karpathy_flickr_layout(tmp_path):
    records = [flickr_record("1000092795", "test"), flickr_record("10002456", "train")]
    write_json(tmp_path / "dataset_flickr30k.json", {"images": records, "dataset": "flickr30k"})
    for record in records:
        write_image(tmp_path / "flickr30k_images" / record["filename"])
    settings = {"file": "dataset_flickr30k.json", "karpathy_splits": ["test"], "images": "flickr30k_images"}

    [example] = load_karpathy(settings, tmp_path, "test")

    assert example.id == "1000092795"
    assert example.fields == {"caption": "A dog 1000092795.", "image_id": "1000092795"}
    assert example.target == ["A dog 1000092795.", "A puppy 1000092795."]
    assert example.image.path == tmp_path / "flickr30k_images" / "1000092795.jpg"


def expect_error(tmp_path: Path, *words: str) -> None:
    with pytest.raises(InputError) as caught:
        load_karpathy({"file": "dataset_coco.json", "karpathy_splits": ["test"]}, tmp_path, "test")
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_karpathy_missing_file(tmp_path):
    expect_error(tmp_path, "dataset_coco.json", "not found")


def test_karpathy_malformed_json(tmp_path):
    (tmp_path / "dataset_coco.json").write_text('{"images": [')
    expect_error(tmp_path, "dataset_coco.json", "invalid JSON")


def test_karpathy_missing_sentences(tmp_path):
    record = coco_record(1, "test")
    del record["sentences"]
    make_coco_folder(tmp_path, [record])
    expect_error(tmp_path, "dataset_coco.json", "COCO_val2014_000000000001.jpg", "'sentences'")


def test_karpathy_missing_raw(tmp_path):
    record = coco_record(1, "test")
    del record["sentences"][1]["raw"]
    make_coco_folder(tmp_path, [record])
    expect_error(tmp_path, "sentences[1]", "'raw'")


def test_karpathy_duplicate_id(tmp_path):
    make_coco_folder(tmp_path, [coco_record(1, "test"), coco_record(1, "test")])
    expect_error(tmp_path, "duplicate image id 1")


def test_karpathy_missing_image(tmp_path):
    make_coco_folder(tmp_path, [coco_record(1, "test"), coco_record(5, "test")])
    (tmp_path / "val2014" / "COCO_val2014_000000000005.jpg").unlink()
    expect_error(tmp_path, "COCO_val2014_000000000005.jpg", "image id 5", "not found")


def test_karpathy_no_image_in_split(tmp_path):
    make_coco_folder(tmp_path, [coco_record(1, "train")])
    expect_error(tmp_path, "no image", "test")


def test_karpathy_corrupt_image_fails_on_open(tmp_path):
    make_coco_folder(tmp_path, [coco_record(1, "test")])
    (tmp_path / "val2014" / "COCO_val2014_000000000001.jpg").write_bytes(b"\xff\xd8 truncated")
    [example] = load_karpathy({"file": "dataset_coco.json", "karpathy_splits": ["test"]}, tmp_path, "test")

    with pytest.raises(InputError) as caught:
        example.image.open()
    assert "COCO_val2014_000000000001.jpg" in str(caught.value)


def test_karpathy_file_is_not_modified(tmp_path):
    make_coco_folder(tmp_path, [coco_record(1, "test")])
    before = (tmp_path / "dataset_coco.json").read_text()
    load_karpathy({"file": "dataset_coco.json", "karpathy_splits": ["test"]}, tmp_path, "test")
    assert json.loads((tmp_path / "dataset_coco.json").read_text()) == json.loads(before)
