"""Tests of the built-in task files: they parse, keep OpenFlamingo's prompts, and load every split
from a data folder laid out as the official downloads are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_builders import write_image, write_json

from flamingo_eval.data import LOADERS, load_class_names, load_split
from flamingo_eval.errors import InputError
from flamingo_eval.registry import load_task, task_files

TASKS = ["okvqa", "vqav2", "textvqa", "vizwiz", "coco", "flickr30k", "imagenet", "hateful_memes"]

VQA_PROMPT = (
    "<image>Question:{question} Short answer:{answer}<|endofchunk|>",
    "<image>Question:{question} Short answer:",
    "\n",
)
CAPTION_PROMPT = ("<image>Output:{caption}<|endofchunk|>", "<image>Output:", "\n")
IMAGENET_PROMPT = ("<image>Output:{class_name}<|endofchunk|>", "<image>Output:", "")
MEMES_PROMPT = (
    "<image>is an image with: '{ocr}' written on it. Is it hateful? Answer:{class_name}<|endofchunk|>",
    "<image>is an image with: '{ocr}' written on it. Is it hateful? Answer:",
    "",
)


def test_task_files_all_present():
    assert set(TASKS) <= set(task_files())


@pytest.mark.parametrize("name", TASKS)
def test_task_file_parses(name):
    task = load_task(name)
    assert task.name == name
    assert task.data.loader in LOADERS
    assert task.data.demo_split == "train"
    assert task.shots == [0, 4, 8, 16, 32]


@pytest.mark.parametrize(
    ("name", "prompt", "max_new_tokens", "postprocess", "metric"),
    [
        ("vqav2", VQA_PROMPT, 5, ["vqa_answer"], "vqa_accuracy"),
        ("textvqa", VQA_PROMPT, 10, ["vqa_answer"], "vqa_accuracy"),
        ("vizwiz", VQA_PROMPT, 5, ["vqa_answer"], "vqa_accuracy"),
        ("coco", CAPTION_PROMPT, 20, ["caption"], "cider"),
        ("flickr30k", CAPTION_PROMPT, 20, ["caption"], "cider"),
    ],
)
def test_generation_task_protocol(name, prompt, max_new_tokens, postprocess, metric):
    task = load_task(name)
    assert task.kind == "generation"
    assert (task.prompt.demo, task.prompt.query, task.prompt.separator) == prompt
    assert task.generation.num_beams == 3
    assert task.generation.length_penalty == 0.0
    assert task.generation.max_new_tokens == max_new_tokens
    assert task.postprocess == postprocess
    assert task.metric_names == [metric]


def test_imagenet_task_protocol():
    task = load_task("imagenet")
    assert task.kind == "ranking"
    assert (task.prompt.demo, task.prompt.query, task.prompt.separator) == IMAGENET_PROMPT
    assert task.ranking.class_names == "imagenet"
    assert task.metric_names == ["top1", "top5"]
    assert task.data.eval_split == "val"


def test_hateful_memes_task_protocol():
    task = load_task("hateful_memes")
    assert task.kind == "ranking"
    assert (task.prompt.demo, task.prompt.query, task.prompt.separator) == MEMES_PROMPT
    assert task.ranking.class_names == ["no", "yes"]
    assert task.ranking.positive_class == "yes"
    assert task.metric_names == ["roc_auc"]
    assert task.data.eval_split == "test_seen"
    assert {"train", "dev_seen", "test_seen"} <= set(task.data.splits)


@pytest.mark.parametrize("name", ["vqav2", "vizwiz"])
def test_testdev_split_has_no_annotations(name):
    settings = load_task(name).data.splits["testdev"]
    assert "annotations" not in settings


def write_vqa_split(root: Path, questions: str, annotations: str | None, folder: str, image_name, image_ids) -> None:
    question_records = [
        {"question_id": 100 + index, "image_id": image_id, "question": f"question {index}?"}
        for index, image_id in enumerate(image_ids)
    ]
    write_json(root / questions, {"questions": question_records})
    if annotations is not None:
        answers = [{"answer": "yes", "answer_confidence": "yes"}] * 10
        annotation_records = [
            {"question_id": record["question_id"], "image_id": record["image_id"], "answers": answers}
            for record in question_records
        ]
        write_json(root / annotations, {"annotations": annotation_records})
    for image_id in image_ids:
        write_image(root / folder / image_name(image_id))


def coco_name(split: str):
    return lambda image_id: f"COCO_{split}_{image_id:012d}.jpg"


def build_vqav2(root: Path) -> None:
    for split in ("train2014", "val2014"):
        write_vqa_split(
            root,
            f"v2_OpenEnded_mscoco_{split}_questions.json",
            f"v2_mscoco_{split}_annotations.json",
            split,
            coco_name(split),
            [1, 2],
        )
    write_vqa_split(root, "v2_OpenEnded_mscoco_test-dev2015_questions.json", None, "test2015", coco_name("test2015"), [3])


def build_okvqa(root: Path) -> None:
    for split in ("train2014", "val2014"):
        write_vqa_split(
            root,
            f"OpenEnded_mscoco_{split}_questions.json",
            f"mscoco_{split}_annotations.json",
            split,
            coco_name(split),
            [4],
        )


def build_textvqa(root: Path) -> None:
    for split in ("train", "val"):
        write_vqa_split(
            root,
            f"{split}_questions_vqa_format.json",
            f"{split}_annotations_vqa_format.json",
            "train_images",
            lambda image_id: f"{image_id}.jpg",
            ["0054c91397f2fe05", "003a8ae2ef43b901"],
        )


def build_vizwiz(root: Path) -> None:
    for split in ("train", "val"):
        write_vqa_split(
            root,
            f"{split}_questions_vqa_format.json",
            f"{split}_annotations_vqa_format.json",
            split,
            lambda image_id: image_id,
            [f"VizWiz_{split}_00000000.jpg"],
        )
    write_vqa_split(root, "test_questions_vqa_format.json", None, "test", lambda image_id: image_id, ["VizWiz_test_00000000.jpg"])


def karpathy_records(coco: bool) -> list[dict]:
    records = []
    for number, split in enumerate(["train", "restval", "val", "test"]):
        folder = "train2014" if split == "train" else "val2014"
        record = {"split": split, "sentences": [{"raw": f"caption {number}"}]}
        if coco:
            record.update(filepath=folder, filename=f"COCO_{folder}_{number:012d}.jpg", cocoid=number)
        else:
            record.update(filename=f"{1000 + number}.jpg")
        records.append(record)
    return records


def build_coco(root: Path) -> None:
    records = karpathy_records(coco=True)
    write_json(root / "dataset_coco.json", {"images": records})
    for record in records:
        write_image(root / record["filepath"] / record["filename"])


def build_flickr30k(root: Path) -> None:
    records = karpathy_records(coco=False)
    write_json(root / "dataset_flickr30k.json", {"images": records})
    for record in records:
        write_image(root / "flickr30k_images" / record["filename"])


def build_imagenet(root: Path) -> None:
    for split in ("train", "val"):
        for wnid in ("n01440764", "n01443537"):
            write_image(root / split / wnid / f"{split}_{wnid}.JPEG")
    (root / "classnames.txt").write_text("tench\ngoldfish\n")


def build_hateful_memes(root: Path) -> None:
    for number, split in enumerate(["train", "dev_seen", "test_seen"]):
        meme = {"id": number, "img": f"img/{number:05d}.png", "label": number % 2, "text": "words"}
        (root / f"{split}.jsonl").write_text(json.dumps(meme) + "\n")
        write_image(root / meme["img"])


BUILDERS = {
    "vqav2": build_vqav2,
    "okvqa": build_okvqa,
    "textvqa": build_textvqa,
    "vizwiz": build_vizwiz,
    "coco": build_coco,
    "flickr30k": build_flickr30k,
    "imagenet": build_imagenet,
    "hateful_memes": build_hateful_memes,
}


@pytest.mark.parametrize("name", TASKS)
def test_task_loads_every_split(tmp_path, name):
    BUILDERS[name](tmp_path)
    task = load_task(name)

    for split in task.data.splits:
        examples = load_split(task, split, tmp_path)
        assert examples, split
        for example in examples:
            task.prompt.query.format(**example.fields)
            if example.target is not None:
                task.prompt.demo.format(**example.fields)


def test_karpathy_tasks_select_train_and_test(tmp_path):
    build_coco(tmp_path)
    task = load_task("coco")

    train = load_split(task, "train", tmp_path)
    test = load_split(task, "test", tmp_path)

    assert [example.id for example in train] == ["0"]
    assert [example.id for example in test] == ["3"]


def test_load_split_unknown_split(tmp_path):
    with pytest.raises(InputError) as caught:
        load_split(load_task("vqav2"), "test", tmp_path)
    assert "'test'" in str(caught.value)
    assert "testdev" in str(caught.value)


def test_load_split_unknown_source(tmp_path):
    with pytest.raises(InputError) as caught:
        load_split(load_task("vqav2"), "val", tmp_path, source="s3")
    assert "'s3'" in str(caught.value)


def test_load_split_missing_data_folder(tmp_path):
    with pytest.raises(InputError) as caught:
        load_split(load_task("vqav2"), "val", tmp_path / "absent")
    assert "absent" in str(caught.value)


def test_class_names_imagenet_from_file(tmp_path):
    build_imagenet(tmp_path)
    assert load_class_names(load_task("imagenet"), tmp_path) == ["tench", "goldfish"]


def test_class_names_imagenet_count_mismatch(tmp_path):
    build_imagenet(tmp_path)
    (tmp_path / "classnames.txt").write_text("tench\n")
    with pytest.raises(InputError):
        load_class_names(load_task("imagenet"), tmp_path)


def test_class_names_inline_list(tmp_path):
    assert load_class_names(load_task("hateful_memes"), tmp_path) == ["no", "yes"]


def test_class_names_generation_task(tmp_path):
    with pytest.raises(InputError):
        load_class_names(load_task("vqav2"), tmp_path)


def test_setting_error_names_task_file(tmp_path):
    text = load_task("vqav2").source_path.read_text()
    user_file = tmp_path / "my_vqav2.yaml"
    user_file.write_text(text.replace('      image_file: "COCO_val2014_{image_id:012d}.jpg"\n', ""))
    build_vqav2(tmp_path)

    with pytest.raises(InputError) as caught:
        load_split(load_task(str(user_file)), "val", tmp_path)

    assert str(user_file) in str(caught.value)
    assert "data.splits.val" in str(caught.value)
    assert "'image_file'" in str(caught.value)
