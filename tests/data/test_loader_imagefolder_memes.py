"""Tests of the ImageNet class-folder loader and the Hateful Memes JSON lines loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_builders import write_image
from open_flamingo.eval.classification_utils import IMAGENET_CLASSNAMES

from flamingo_eval.data.hateful_memes import load_hateful_memes
from flamingo_eval.data.imagefolder import class_names, load_imagefolder
from flamingo_eval.errors import InputError

WNIDS = ["n01440764", "n01443537", "n01484850"]


def make_imagenet_folder(root: Path, wnids=WNIDS, names=("tench", "goldfish", "great white shark")) -> Path:
    for index, wnid in enumerate(wnids):
        for number in range(2):
            write_image(root / "val" / wnid / f"ILSVRC2012_val_{index}{number}.JPEG", (index * 50, 0, 0))
    if names is not None:
        (root / "classnames.txt").write_text("\n".join(names) + "\n")
    return root


def test_imagefolder_indices_follow_sorted_folders(tmp_path):
    make_imagenet_folder(tmp_path, wnids=["n03", "n01", "n02"], names=("c1", "c2", "c3"))

    examples = load_imagefolder({"folder": "val"}, tmp_path, "val")

    assert [example.id for example in examples] == [
        "n01/ILSVRC2012_val_10",
        "n01/ILSVRC2012_val_11",
        "n02/ILSVRC2012_val_20",
        "n02/ILSVRC2012_val_21",
        "n03/ILSVRC2012_val_00",
        "n03/ILSVRC2012_val_01",
    ]
    assert [example.target for example in examples] == [0, 0, 1, 1, 2, 2]
    assert [example.fields["class_name"] for example in examples] == ["c1", "c1", "c2", "c2", "c3", "c3"]
    assert examples[0].image.path == tmp_path / "val" / "n01" / "ILSVRC2012_val_10.JPEG"
    assert examples[0].image.key == "n01/ILSVRC2012_val_10"


def test_imagefolder_folder_defaults_to_split(tmp_path):
    make_imagenet_folder(tmp_path)
    examples = load_imagefolder({}, tmp_path, "val")
    assert len(examples) == 6


def test_imagefolder_skips_hidden_and_other_files(tmp_path):
    make_imagenet_folder(tmp_path)
    (tmp_path / "val" / WNIDS[0] / "notes.txt").write_text("x")
    (tmp_path / "val" / WNIDS[0] / ".DS_Store").write_text("x")
    (tmp_path / "val" / ".cache").mkdir()

    examples = load_imagefolder({}, tmp_path, "val")

    assert len(examples) == 6


def test_imagefolder_class_count_mismatch(tmp_path):
    make_imagenet_folder(tmp_path, names=("tench", "goldfish"))
    with pytest.raises(InputError) as caught:
        load_imagefolder({}, tmp_path, "val")
    assert "3 class folders" in str(caught.value)
    assert "classnames.txt" in str(caught.value)


def test_imagefolder_without_names_needs_1000_classes(tmp_path):
    make_imagenet_folder(tmp_path, names=None)
    with pytest.raises(InputError) as caught:
        load_imagefolder({}, tmp_path, "val")
    assert "1000 names" in str(caught.value)


def test_imagefolder_imagenet_names_by_default(tmp_path):
    names = class_names({}, tmp_path, "val", 1000)
    assert names == list(IMAGENET_CLASSNAMES)


def test_imagefolder_missing_folder(tmp_path):
    with pytest.raises(InputError) as caught:
        load_imagefolder({"folder": "val"}, tmp_path, "val")
    assert str(tmp_path / "val") in str(caught.value)


def test_imagefolder_corrupt_image_fails_on_open(tmp_path):
    make_imagenet_folder(tmp_path)
    (tmp_path / "val" / WNIDS[1] / "ILSVRC2012_val_10.JPEG").write_bytes(b"garbage")
    examples = load_imagefolder({}, tmp_path, "val")
    corrupt = next(example for example in examples if example.id == f"{WNIDS[1]}/ILSVRC2012_val_10")

    with pytest.raises(InputError) as caught:
        corrupt.image.open()
    assert "ILSVRC2012_val_10.JPEG" in str(caught.value)


MEMES = [
    {"id": 42953, "img": "img/42953.png", "label": 0, "text": "its their character not their color"},
    {"id": 23058, "img": "img/23058.png", "label": 1, "text": "don't be afraid to love"},
    {"id": 13894, "img": "img/13894.png", "label": 0, "text": "putting bows on {pets}"},
]


def make_memes_folder(root: Path, memes=MEMES, name: str = "dev_seen.jsonl") -> Path:
    (root / name).write_text("".join(json.dumps(meme) + "\n" for meme in memes))
    for meme in memes:
        write_image(root / meme["img"])
    return root


def test_memes_fields_and_targets(tmp_path):
    make_memes_folder(tmp_path)

    examples = load_hateful_memes({"file": "dev_seen.jsonl"}, tmp_path, "dev_seen")

    assert [example.id for example in examples] == ["42953", "23058", "13894"]
    assert [example.target for example in examples] == [0, 1, 0]
    assert examples[1].fields == {"ocr": "don't be afraid to love", "class_name": "yes"}
    assert examples[0].fields["class_name"] == "no"
    assert examples[2].fields["ocr"] == "putting bows on {pets}"
    assert examples[0].image.path == tmp_path / "img" / "42953.png"
    assert examples[0].image.key == "42953"


def test_memes_unlabelled_split(tmp_path):
    memes = [{key: value for key, value in meme.items() if key != "label"} for meme in MEMES]
    make_memes_folder(tmp_path, memes, "test_unseen.jsonl")

    examples = load_hateful_memes({"file": "test_unseen.jsonl"}, tmp_path, "test_unseen")

    assert [example.target for example in examples] == [None, None, None]
    assert [example.fields["class_name"] for example in examples] == ["", "", ""]


def expect_memes_error(tmp_path: Path, *words: str) -> None:
    with pytest.raises(InputError) as caught:
        load_hateful_memes({"file": "dev_seen.jsonl"}, tmp_path, "dev_seen")
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_memes_malformed_line(tmp_path):
    make_memes_folder(tmp_path)
    lines = (tmp_path / "dev_seen.jsonl").read_text().splitlines()
    lines[1] = lines[1][:-3]
    (tmp_path / "dev_seen.jsonl").write_text("\n".join(lines) + "\n")
    expect_memes_error(tmp_path, "dev_seen.jsonl", "line 2", "invalid JSON")


def test_memes_missing_field(tmp_path):
    memes = [dict(meme) for meme in MEMES]
    del memes[2]["text"]
    make_memes_folder(tmp_path, memes)
    expect_memes_error(tmp_path, "dev_seen.jsonl", "line 3", "id 13894", "'text'")


def test_memes_invalid_label(tmp_path):
    memes = [dict(meme) for meme in MEMES]
    memes[0]["label"] = "hateful"
    make_memes_folder(tmp_path, memes)
    expect_memes_error(tmp_path, "line 1", "'hateful'")


def test_memes_duplicate_id(tmp_path):
    make_memes_folder(tmp_path, MEMES + [MEMES[0]])
    expect_memes_error(tmp_path, "line 4", "42953")


def test_memes_missing_image(tmp_path):
    make_memes_folder(tmp_path)
    (tmp_path / "img" / "23058.png").unlink()
    expect_memes_error(tmp_path, "23058.png", "id 23058", "not found")


def test_memes_missing_file(tmp_path):
    expect_memes_error(tmp_path, "dev_seen.jsonl", "not found")
