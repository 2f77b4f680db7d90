"""Tests of the Hugging Face `datasets` source: the same Examples as the file loaders return."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from data_builders import examples_to_columns, write_image, write_json
from PIL import Image

from flamingo_eval.data import load_split
from flamingo_eval.errors import InputError
from flamingo_eval.registry import load_task

REPOSITORY = Path(__file__).resolve().parents[2]


def with_data(task_name: str, splits: dict, hf: dict | None = None):
    task = load_task(task_name)
    data = dataclasses.replace(task.data, splits=splits, hf=hf, eval_split=next(iter(splits)))
    return dataclasses.replace(task, data=data)


def write_parquet(columns: dict, path: Path, features: datasets.Features | None = None) -> None:
    dataset = datasets.Dataset.from_dict(columns, features=features)
    dataset = dataset.cast_column("image", datasets.Image())
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.to_parquet(str(path))


def assert_same_examples(from_hf, from_files) -> None:
    assert [example.id for example in from_hf] == [example.id for example in from_files]
    for hf_example, file_example in zip(from_hf, from_files):
        assert hf_example.fields == file_example.fields
        assert hf_example.target == file_example.target
        assert hf_example.image.key == file_example.image.key
        assert hf_example.image.path is None
        hf_pixels = hf_example.image.open()
        file_pixels = file_example.image.open()
        assert hf_pixels.size == file_pixels.size
        assert hf_pixels.tobytes() == file_pixels.tobytes()


def make_vqa_files(root: Path, with_answer_ids: bool) -> dict:
    questions, annotations = [], []
    for number, question_id in enumerate([301, 302, 303]):
        image_id = 10 + number // 2
        questions.append({"question_id": question_id, "image_id": image_id, "question": f"Q{question_id}?"})
        records = [{"answer": f"a{question_id}-{index}", "answer_confidence": "yes"} for index in range(10)]
        if with_answer_ids:
            for index, record in enumerate(records):
                record["answer_id"] = index + 1
        annotations.append({"question_id": question_id, "image_id": image_id, "answers": records})
        write_image(root / "images" / f"{image_id}.png", (image_id * 10, 100, 30))
    write_json(root / "q.json", {"questions": questions})
    write_json(root / "a.json", {"annotations": annotations})
    return {"questions": "q.json", "annotations": "a.json", "images": "images", "image_file": "{image_id}.png"}


@pytest.mark.parametrize("with_answer_ids", [True, False])
def test_hf_parquet_vqa_matches_files(tmp_path, with_answer_ids):
    settings = make_vqa_files(tmp_path, with_answer_ids)
    from_files = load_split(with_data("vqav2", {"val": settings}), "val", tmp_path)
    write_parquet(examples_to_columns(from_files, "vqa"), tmp_path / "hf" / "val.parquet")
    hf = {"data_files": {"val": "hf/val.parquet"}, "cache_dir": str(tmp_path / "cache")}

    from_hf = load_split(with_data("vqav2", {"val": settings}, hf), "val", tmp_path, source="hf")

    assert_same_examples(from_hf, from_files)
    assert from_hf[0].image is not from_hf[1].image


def test_hf_parquet_captions_match_files(tmp_path):
    records = []
    for cocoid in (5, 6):
        filename = f"COCO_val2014_{cocoid:012d}.jpg"
        write_image(tmp_path / "val2014" / filename, (cocoid * 20, 0, 0))
        sentences = [{"raw": f"Caption {cocoid} {index}."} for index in range(5)]
        records.append({"filepath": "val2014", "filename": filename, "split": "test", "cocoid": cocoid, "sentences": sentences})
    write_json(tmp_path / "dataset_coco.json", {"images": records})
    settings = {"test": {"file": "dataset_coco.json", "karpathy_splits": ["test"]}}
    from_files = load_split(with_data("coco", settings), "test", tmp_path)
    write_parquet(examples_to_columns(from_files, "karpathy"), tmp_path / "coco-test.parquet")
    hf = {"data_files": {"test": "coco-test.parquet"}, "cache_dir": str(tmp_path / "cache")}

    from_hf = load_split(with_data("coco", settings, hf), "test", tmp_path, source="hf")

    assert_same_examples(from_hf, from_files)


def test_hf_parquet_memes_match_files(tmp_path):
    memes = [
        {"id": 42953, "img": "img/42953.png", "label": 0, "text": "first"},
        {"id": 23058, "img": "img/23058.png", "label": 1, "text": "second"},
    ]
    (tmp_path / "dev_seen.jsonl").write_text("".join(json.dumps(meme) + "\n" for meme in memes))
    for number, meme in enumerate(memes):
        write_image(tmp_path / meme["img"], (0, number * 90, 0))
    settings = {"dev_seen": {"file": "dev_seen.jsonl"}}
    from_files = load_split(with_data("hateful_memes", settings), "dev_seen", tmp_path)
    write_parquet(examples_to_columns(from_files, "hateful_memes"), tmp_path / "dev.parquet")
    hf = {"data_files": {"dev_seen": "dev.parquet"}, "cache_dir": str(tmp_path / "cache")}

    from_hf = load_split(with_data("hateful_memes", settings, hf), "dev_seen", tmp_path, source="hf")

    assert_same_examples(from_hf, from_files)


def test_hf_saved_imagenet_matches_files(tmp_path):
    """A DatasetDict written by save_to_disk, with a ClassLabel column giving the class names."""
    names = ["tench", "goldfish"]
    for index, wnid in enumerate(["n01440764", "n01443537"]):
        write_image(tmp_path / "val" / wnid / f"img{index}.JPEG", (index * 100, 5, 5))
    (tmp_path / "classnames.txt").write_text("\n".join(names))
    settings = {"val": {"folder": "val"}}
    from_files = load_split(with_data("imagenet", settings), "val", tmp_path)
    features = datasets.Features(
        {"id": datasets.Value("string"), "image": datasets.Image(), "label": datasets.ClassLabel(names=names)}
    )
    dataset = datasets.Dataset.from_dict(examples_to_columns(from_files, "imagefolder"), features=features)
    datasets.DatasetDict({"validation": dataset}).save_to_disk(str(tmp_path / "saved"))
    hf = {"path": "saved", "splits": {"val": "validation"}}

    from_hf = load_split(with_data("imagenet", settings, hf), "val", tmp_path, source="hf")

    assert_same_examples(from_hf, from_files)


def test_hf_column_mapping(tmp_path):
    image = io.BytesIO()
    Image.new("RGB", (3, 2), (1, 2, 3)).save(image, format="PNG")
    columns = {
        "qid": [7],
        "img": [{"bytes": image.getvalue(), "path": None}],
        "text": ["What colour?"],
        "multiple": [["red", "blue"]],
    }
    dataset = datasets.Dataset.from_dict(columns).cast_column("img", datasets.Image())
    dataset.to_parquet(str(tmp_path / "x.parquet"))
    hf = {
        "data_files": {"val": "x.parquet"},
        "cache_dir": str(tmp_path / "cache"),
        "columns": {"id": "qid", "image": "img", "question": "text", "answers": "multiple"},
    }

    [example] = load_split(with_data("vqav2", {"val": {}}, hf), "val", tmp_path, source="hf")

    assert example.id == "7"
    assert example.fields == {"question": "What colour?", "answer": "red", "image_id": "7"}
    # Plain-string answers get distinct ids, so VQA accuracy does not drop equal answers together.
    assert example.target == [{"answer": "red", "answer_id": 1}, {"answer": "blue", "answer_id": 2}]
    assert example.image.open().getpixel((0, 0)) == (1, 2, 3)


def test_hf_missing_column(tmp_path):
    write_parquet({"id": ["1"], "image": [None]}, tmp_path / "x.parquet")
    hf = {"data_files": {"val": "x.parquet"}, "cache_dir": str(tmp_path / "cache")}
    with pytest.raises(InputError) as caught:
        load_split(with_data("vqav2", {"val": {}}, hf), "val", tmp_path, source="hf")
    assert "'question'" in str(caught.value)


def test_hf_without_section(tmp_path):
    with pytest.raises(InputError) as caught:
        load_split(with_data("vqav2", {"val": {}}), "val", tmp_path, source="hf")
    assert "data.hf" in str(caught.value)


def test_hf_missing_parquet_file(tmp_path):
    hf = {"data_files": {"val": "absent.parquet"}, "cache_dir": str(tmp_path / "cache")}
    with pytest.raises(InputError) as caught:
        load_split(with_data("vqav2", {"val": {}}, hf), "val", tmp_path, source="hf")
    assert "absent.parquet" in str(caught.value)


OFFLINE_SCRIPT = """
import dataclasses, sys
from pathlib import Path
from flamingo_eval.data import load_split
from flamingo_eval.errors import InputError
from flamingo_eval.registry import load_task

task = load_task("vqav2")
hf = {"path": "flamingo-eval-test/absent-dataset", "cache_dir": sys.argv[1]}
task = dataclasses.replace(task, data=dataclasses.replace(task.data, hf=hf))
try:
    load_split(task, "val", Path(sys.argv[1]), source="hf")
except InputError as error:
    print("InputError:", error)
"""


def test_hf_hub_id_offline(tmp_path):
    """With HF_HUB_OFFLINE set, an uncached hub id fails with InputError and no network call."""
    environment = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(REPOSITORY))
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "InputError:" in result.stdout
    assert "flamingo-eval-test/absent-dataset" in result.stdout


@pytest.mark.parametrize(
    "task_name", ["okvqa", "vqav2", "textvqa", "vizwiz", "coco", "flickr30k", "imagenet", "hateful_memes"]
)
def test_hf_parquet_generated_sample(tmp_path, task_name):
    """The eval split of each generated sample, written to parquet, loads back unchanged."""
    sample_data = pytest.importorskip("flamingo_eval.sample_data")
    data_dir = sample_data.write_sample(task_name, tmp_path / "sample")
    task = load_task(task_name)
    split = task.data.eval_split
    from_files = load_split(task, split, data_dir)
    features = None
    if task.data.loader == "imagefolder":
        # A plain integer label column: class names then come from the task, as for the files.
        features = datasets.Features(
            {"id": datasets.Value("string"), "image": datasets.Image(), "label": datasets.Value("int64")}
        )
    write_parquet(examples_to_columns(from_files, task.data.loader), tmp_path / "eval.parquet", features)
    hf = {"data_files": {split: str(tmp_path / "eval.parquet")}, "cache_dir": str(tmp_path / "cache")}
    task = dataclasses.replace(task, data=dataclasses.replace(task.data, hf=hf))

    from_hf = load_split(task, split, data_dir, source="hf")

    assert_same_examples(from_hf, from_files)


def test_hf_image_path_column(tmp_path):
    write_image(tmp_path / "memes" / "1.png", (9, 8, 7))
    dataset = datasets.Dataset.from_dict({"id": [1], "image": ["memes/1.png"], "text": ["hi"], "label": [1]})
    dataset.to_parquet(str(tmp_path / "m.parquet"))
    hf = {"data_files": {"dev_seen": "m.parquet"}, "cache_dir": str(tmp_path / "cache")}

    [example] = load_split(with_data("hateful_memes", {"dev_seen": {}}, hf), "dev_seen", tmp_path, source="hf")

    assert example.id == "1"
    assert example.target == 1
    assert example.fields == {"ocr": "hi", "class_name": "yes"}
    assert example.image.path == tmp_path / "memes" / "1.png"
    assert example.image.open().getpixel((0, 0)) == (9, 8, 7)


def test_hf_image_path_missing(tmp_path):
    dataset = datasets.Dataset.from_dict({"id": [1], "image": ["memes/absent.png"], "text": ["hi"], "label": [0]})
    dataset.to_parquet(str(tmp_path / "m.parquet"))
    hf = {"data_files": {"dev_seen": "m.parquet"}, "cache_dir": str(tmp_path / "cache")}

    with pytest.raises(InputError) as caught:
        load_split(with_data("hateful_memes", {"dev_seen": {}}, hf), "dev_seen", tmp_path, source="hf")

    assert "absent.png" in str(caught.value)
