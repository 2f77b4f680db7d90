"""Tests of the synthetic sample data: layouts, sizes, ids, joins, determinism and content."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import inflection
import numpy as np
import pytest
from PIL import Image

from flamingo_eval.errors import InputError
from flamingo_eval.sample_data import SAMPLE_TASKS, write_sample

MIN_TRAIN = 256
MIN_EVAL = 64


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("samples")
    for task in SAMPLE_TASKS:
        write_sample(task, root / task)
    return root


def _file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _assert_image_opens(path: Path) -> None:
    assert path.is_file(), f"missing image {path}"
    with Image.open(path) as image:
        image.load()
        assert image.size[0] >= 32


# --- all tasks -------------------------------------------------------------------------------


def test_sample_tasks_cover_eight_tasks() -> None:
    assert set(SAMPLE_TASKS) == {
        "okvqa", "vqav2", "textvqa", "vizwiz", "coco", "flickr30k", "imagenet", "hateful_memes"
    }


def test_unknown_task_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nocaps"):
        write_sample("nocaps", tmp_path)


@pytest.mark.parametrize("task", SAMPLE_TASKS)
def test_same_seed_gives_identical_bytes(task: str, sample_root: Path, tmp_path: Path) -> None:
    write_sample(task, tmp_path / "again", seed=0)
    assert _file_hashes(tmp_path / "again") == _file_hashes(sample_root / task)


@pytest.mark.parametrize("task", SAMPLE_TASKS)
def test_other_seed_gives_other_data(task: str, sample_root: Path, tmp_path: Path) -> None:
    write_sample(task, tmp_path / "other", seed=1)
    assert _file_hashes(tmp_path / "other") != _file_hashes(sample_root / task)


def test_total_size_is_small(sample_root: Path) -> None:
    total = sum(path.stat().st_size for path in sample_root.rglob("*") if path.is_file())
    assert total < 10_000_000


# --- VQA layouts ----------------------------------------------------------------------------

# task -> split -> (questions file, annotations file or None, image path template, minimum size)
VQA_SPLITS = {
    "textvqa": {
        "train": ("train_questions_vqa_format.json", "train_annotations_vqa_format.json",
                  "train_images/{image_id}.jpg", MIN_TRAIN),
        "val": ("val_questions_vqa_format.json", "val_annotations_vqa_format.json",
                "train_images/{image_id}.jpg", MIN_EVAL),
    },
    "vizwiz": {
        "train": ("train_questions_vqa_format.json", "train_annotations_vqa_format.json",
                  "train/{image_id}", MIN_TRAIN),
        "val": ("val_questions_vqa_format.json", "val_annotations_vqa_format.json",
                "val/{image_id}", MIN_EVAL),
        "test": ("test_questions_vqa_format.json", None, "test/{image_id}", 32),
    },
    "okvqa": {
        "train": ("OpenEnded_mscoco_train2014_questions.json", "mscoco_train2014_annotations.json",
                  "train2014/COCO_train2014_{image_id:012d}.jpg", MIN_TRAIN),
        "val": ("OpenEnded_mscoco_val2014_questions.json", "mscoco_val2014_annotations.json",
                "val2014/COCO_val2014_{image_id:012d}.jpg", MIN_EVAL),
    },
    "vqav2": {
        "train": ("v2_OpenEnded_mscoco_train2014_questions.json",
                  "v2_mscoco_train2014_annotations.json",
                  "train2014/COCO_train2014_{image_id:012d}.jpg", MIN_TRAIN),
        "val": ("v2_OpenEnded_mscoco_val2014_questions.json", "v2_mscoco_val2014_annotations.json",
                "val2014/COCO_val2014_{image_id:012d}.jpg", MIN_EVAL),
        "test-dev": ("v2_OpenEnded_mscoco_test-dev2015_questions.json", None,
                     "test2015/COCO_test2015_{image_id:012d}.jpg", 32),
    },
}

VQA_CASES = [(task, split) for task, splits in VQA_SPLITS.items() for split in splits]
ANNOTATED_CASES = [(task, split) for task, split in VQA_CASES if VQA_SPLITS[task][split][1]]


@pytest.mark.parametrize(("task", "split"), VQA_CASES)
def test_vqa_questions_and_images(task: str, split: str, sample_root: Path) -> None:
    questions_file, _, image_template, minimum = VQA_SPLITS[task][split]
    questions = _load(sample_root / task / questions_file)["questions"]

    assert len(questions) >= minimum
    question_ids = [question["question_id"] for question in questions]
    assert len(set(question_ids)) == len(question_ids)
    for question in questions:
        assert set(question) == {"image_id", "question", "question_id"}
        assert question["question"].strip()
    for image_id in {question["image_id"] for question in questions}:
        _assert_image_opens(sample_root / task / image_template.format(image_id=image_id))


@pytest.mark.parametrize(("task", "split"), ANNOTATED_CASES)
def test_vqa_annotations_join_questions(task: str, split: str, sample_root: Path) -> None:
    questions_file, annotations_file, _, _ = VQA_SPLITS[task][split]
    questions = _load(sample_root / task / questions_file)["questions"]
    annotations = _load(sample_root / task / annotations_file)["annotations"]

    # OpenFlamingo pairs questions and annotations by position, so the order must match too.
    assert [a["question_id"] for a in annotations] == [q["question_id"] for q in questions]
    assert [a["image_id"] for a in annotations] == [q["image_id"] for q in questions]
    for annotation in annotations:
        answers = annotation["answers"]
        assert len(answers) == 10
        if task == "vizwiz":
            assert all("answer_id" not in answer for answer in answers)
        else:
            assert [answer.get("answer_id") for answer in answers] == list(range(1, 11))
        first = answers[0]["answer"]
        assert sum(answer["answer"] == first for answer in answers) >= 7


@pytest.mark.parametrize("task", ["okvqa", "vqav2"])
def test_vqa_images_carry_several_questions(task: str, sample_root: Path) -> None:
    questions_file = VQA_SPLITS[task]["train"][0]
    questions = _load(sample_root / task / questions_file)["questions"]
    per_image = Counter(question["image_id"] for question in questions)
    assert max(per_image.values()) >= 2
    assert min(per_image.values()) == 1


def test_okvqa_file_headers(sample_root: Path) -> None:
    for subtype in ("train2014", "val2014"):
        questions = _load(sample_root / "okvqa" / f"OpenEnded_mscoco_{subtype}_questions.json")
        annotations = _load(sample_root / "okvqa" / f"mscoco_{subtype}_annotations.json")
        assert questions["data_type"] == "mscoco"
        assert questions["data_subtype"] == subtype
        assert questions["task_type"] == "Open-Ended"
        assert {"info", "license"} <= set(questions)
        assert annotations["data_type"] == "mscoco"
        assert annotations["data_subtype"] == subtype
        assert {"info", "license"} <= set(annotations)


def test_okvqa_annotation_records(sample_root: Path) -> None:
    annotations = _load(sample_root / "okvqa" / "mscoco_val2014_annotations.json")["annotations"]
    for annotation in annotations:
        assert annotation["confidence"] == 3
        assert {"question_type", "answer_type"} <= set(annotation)
        assert annotation["question_id"] // 10 == annotation["image_id"]
        for answer in annotation["answers"]:
            assert set(answer) == {"answer", "raw_answer", "answer_confidence", "answer_id"}
            assert answer["answer_confidence"] == "yes"
    variants = [a for a in annotations if len({answer["answer"] for answer in a["answers"]}) > 1]
    assert variants, "some questions should have annotator disagreement"


def _okvqa_answers(sample_root: Path) -> list[dict]:
    records = []
    for subtype in ("train2014", "val2014"):
        path = sample_root / "okvqa" / f"mscoco_{subtype}_annotations.json"
        annotations = _load(path)["annotations"]
        records += [answer for annotation in annotations for answer in annotation["answers"]]
    return records


def test_okvqa_answers_are_already_stemmed(sample_root: Path) -> None:
    # OK-VQA's stemmer singularises plural nouns with `inflection` and lemmatises "-ing" words;
    # "yes" is in its manual map and stays unchanged.
    for answer in {record["answer"] for record in _okvqa_answers(sample_root)}:
        for word in answer.split():
            assert not word.endswith("ing"), answer
            if word != "yes":
                assert inflection.singularize(word) == word, answer


def test_okvqa_raw_plurals_stem_to_answer(sample_root: Path) -> None:
    changed = [r for r in _okvqa_answers(sample_root) if r["raw_answer"] != r["answer"]]
    assert changed, "some raw answers should be plural nouns"
    for record in changed:
        assert inflection.singularize(record["raw_answer"]) == record["answer"]


def test_vqav2_annotation_fields(sample_root: Path) -> None:
    path = sample_root / "vqav2" / "v2_mscoco_train2014_annotations.json"
    annotations = _load(path)["annotations"]
    answer_types = Counter(annotation["answer_type"] for annotation in annotations)
    assert set(answer_types) == {"yes/no", "number", "other"}
    for annotation in annotations:
        assert annotation["question_id"] // 1000 == annotation["image_id"]
        answers = [answer["answer"] for answer in annotation["answers"]]
        assert annotation["multiple_choice_answer"] == Counter(answers).most_common(1)[0][0]
        assert annotation["question_type"]
        for answer in annotation["answers"]:
            assert answer["answer_confidence"] in {"yes", "maybe", "no"}


def test_vqav2_test_dev_has_no_annotations(sample_root: Path) -> None:
    questions = _load(sample_root / "vqav2" / "v2_OpenEnded_mscoco_test-dev2015_questions.json")
    assert questions["data_subtype"] == "test-dev2015"
    assert not list((sample_root / "vqav2").glob("*test*annotations*"))


def _palette_colours(path: Path, min_pixels: int = 15) -> set[str]:
    """Names of the shape colours that cover at least `min_pixels` pixels of an image."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int64).reshape(-1, 1, 3)
    palette = np.array(list(PALETTE.values()), dtype=np.int64).reshape(1, -1, 3)
    distances = ((pixels - palette) ** 2).sum(axis=2)
    nearest = distances.argmin(axis=1)
    close = distances.min(axis=1) < 60**2
    names = list(PALETTE)
    counts = Counter(names[index] for index in nearest[close])
    return {name for name, count in counts.items() if count >= min_pixels}


PALETTE = {
    "red": (220, 30, 30), "blue": (30, 70, 220), "green": (30, 170, 50),
    "yellow": (240, 210, 20), "purple": (140, 40, 180), "orange": (250, 130, 10),
}


def test_vqav2_colour_answers_match_pixels(sample_root: Path) -> None:
    questions_path = sample_root / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json"
    questions = _load(questions_path)["questions"]
    annotations = _load(sample_root / "vqav2" / "v2_mscoco_val2014_annotations.json")["annotations"]
    checked = 0
    for question, annotation in zip(questions, annotations):
        if question["question"].startswith("What color is the"):
            image = sample_root / "vqav2" / f"val2014/COCO_val2014_{question['image_id']:012d}.jpg"
            assert annotation["multiple_choice_answer"] in _palette_colours(image)
            checked += 1
    assert checked >= 3


# --- TextVQA and VizWiz -----------------------------------------------------------------------


def test_textvqa_ids_and_fields(sample_root: Path) -> None:
    question_ids = []
    for split in ("train", "val"):
        questions = _load(sample_root / "textvqa" / f"{split}_questions_vqa_format.json")
        annotations = _load(sample_root / "textvqa" / f"{split}_annotations_vqa_format.json")
        assert questions["data_type"] == "TextVQA"
        question_ids += [question["question_id"] for question in questions["questions"]]
        for question in questions["questions"]:
            assert re.fullmatch(r"[0-9a-f]{16}", question["image_id"])
            assert question["question"] == question["question"].lower()
        for annotation in annotations["annotations"]:
            assert "answer_type" not in annotation
            assert annotation["multiple_choice_answer"] == annotation["answers"][0]["answer"]
    assert len(set(question_ids)) == len(question_ids)
    assert not (sample_root / "textvqa" / "val_images").exists()


def test_vizwiz_has_unanswerable_dark_or_blank(sample_root: Path) -> None:
    annotations = _load(sample_root / "vizwiz" / "train_annotations_vqa_format.json")["annotations"]
    types = Counter(annotation["question_type"] for annotation in annotations)
    assert set(types) == {"other", "yes/no", "number", "unanswerable"}
    for annotation in annotations:
        with Image.open(sample_root / "vizwiz" / "train" / annotation["image_id"]) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.int64)
        contrast = int((pixels.max(axis=(0, 1)) - pixels.min(axis=(0, 1))).max())
        if annotation["multiple_choice_answer"] == "unanswerable":
            assert annotation["question_type"] == "unanswerable"
            assert contrast < 40 or pixels.max() < 40
        else:
            assert contrast >= 40


def test_vizwiz_test_questions_only(sample_root: Path) -> None:
    test = _load(sample_root / "vizwiz" / "test_questions_vqa_format.json")
    assert set(test) == {"questions"}
    assert test["questions"][0]["image_id"] == "VizWiz_test_00000000.jpg"
    assert not (sample_root / "vizwiz" / "test_annotations_vqa_format.json").exists()


# --- captioning -----------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "minimum"), [
    ("coco", {"train": MIN_TRAIN, "val": MIN_EVAL, "test": MIN_EVAL, "restval": 1}),
    ("flickr30k", {"train": MIN_TRAIN, "val": MIN_EVAL, "test": MIN_EVAL}),
])
def test_karpathy_splits_and_sentences(
    task: str, minimum: dict[str, int], sample_root: Path
) -> None:
    dataset = _load(sample_root / task / f"dataset_{task}.json")
    images = dataset["images"]
    assert dataset["dataset"] == task

    splits = Counter(image["split"] for image in images)
    assert set(splits) == set(minimum)
    for split, count in minimum.items():
        assert splits[split] >= count, split
    assert [image["imgid"] for image in images] == list(range(len(images)))
    sentence_ids = [sentence_id for image in images for sentence_id in image["sentids"]]
    assert len(set(sentence_ids)) == len(sentence_ids)
    filenames = [image["filename"] for image in images]
    assert len(set(filenames)) == len(filenames)

    for image in images:
        sentences = image["sentences"]
        assert len(sentences) == 5
        assert len({sentence["raw"] for sentence in sentences}) == 5
        assert [sentence["sentid"] for sentence in sentences] == image["sentids"]
        for sentence in sentences:
            assert sentence["imgid"] == image["imgid"]
            assert sentence["tokens"] == re.findall(r"[a-z0-9]+", sentence["raw"].lower())
            assert " a orange" not in sentence["raw"]


def test_coco_karpathy_files(sample_root: Path) -> None:
    images = _load(sample_root / "coco" / "dataset_coco.json")["images"]
    cocoids = [image["cocoid"] for image in images]
    assert len(set(cocoids)) == len(cocoids)
    for image in images:
        assert image["filename"] == f"COCO_{image['filepath']}_{image['cocoid']:012d}.jpg"
        expected_folder = "train2014" if image["split"] == "train" else "val2014"
        assert image["filepath"] == expected_folder
        _assert_image_opens(sample_root / "coco" / image["filepath"] / image["filename"])


def test_flickr30k_karpathy_files(sample_root: Path) -> None:
    images = _load(sample_root / "flickr30k" / "dataset_flickr30k.json")["images"]
    for image in images:
        assert "cocoid" not in image
        assert re.fullmatch(r"[0-9]+\.jpg", image["filename"])
        _assert_image_opens(sample_root / "flickr30k" / "flickr30k_images" / image["filename"])


def test_first_caption_names_colours_in_image(sample_root: Path) -> None:
    images = _load(sample_root / "coco" / "dataset_coco.json")["images"]
    for image in images[:40]:
        caption = image["sentences"][0]["raw"]
        named = {colour for colour in PALETTE if re.search(rf"\b{colour}\b", caption)}
        path = sample_root / "coco" / image["filepath"] / image["filename"]
        assert named == _palette_colours(path)


# --- classification -------------------------------------------------------------------------


def test_imagenet_folders_follow_classnames(sample_root: Path) -> None:
    root = sample_root / "imagenet"
    class_names = (root / "classnames.txt").read_text(encoding="utf-8").splitlines()
    train_wnids = sorted(path.name for path in (root / "train").iterdir())
    val_wnids = sorted(path.name for path in (root / "val").iterdir())

    assert len(class_names) == len(set(class_names)) == len(train_wnids)
    assert val_wnids == train_wnids
    assert any(" " in name for name in class_names)
    assert len(list((root / "train").glob("*/*.JPEG"))) >= MIN_TRAIN
    assert len(list((root / "val").glob("*/*.JPEG"))) >= MIN_EVAL
    for wnid in train_wnids:
        assert re.fullmatch(r"n[0-9]{8}", wnid)
        for path in (root / "train" / wnid).iterdir():
            assert re.fullmatch(rf"{wnid}_[0-9]+\.JPEG", path.name)
    val_names = [path.name for path in (root / "val").rglob("*.JPEG")]
    assert len(set(val_names)) == len(val_names)
    for name in val_names:
        assert re.fullmatch(r"ILSVRC2012_val_[0-9]{8}\.JPEG", name)


def test_imagenet_class_colour_is_consistent(sample_root: Path) -> None:
    root = sample_root / "imagenet"
    for wnid_folder in sorted((root / "val").iterdir()):
        colours = [frozenset(_palette_colours(path)) for path in sorted(wnid_folder.iterdir())]
        assert len(set(colours)) == 1, wnid_folder.name
        assert len(colours[0]) == 1, wnid_folder.name


@pytest.mark.parametrize(
    ("split", "minimum"), [("train", MIN_TRAIN), ("dev_seen", MIN_EVAL), ("test_seen", MIN_EVAL)]
)
def test_hateful_memes_split(split: str, minimum: int, sample_root: Path) -> None:
    records = _load_jsonl(sample_root / "hateful_memes" / f"{split}.jsonl")
    assert len(records) >= minimum
    labels = Counter(record["label"] for record in records)
    assert labels[0] == labels[1]
    for record in records:
        assert set(record) == {"id", "img", "label", "text"}
        assert 10_000 <= record["id"] <= 99_999
        assert record["img"] == f"img/{record['id']}.png"
        _assert_image_opens(sample_root / "hateful_memes" / record["img"])


def test_hateful_memes_ids_unique_across_splits(sample_root: Path) -> None:
    ids = []
    for split in ("train", "dev_seen", "test_seen"):
        records = _load_jsonl(sample_root / "hateful_memes" / f"{split}.jsonl")
        ids += [record["id"] for record in records]
    assert len(set(ids)) == len(ids)


def test_hateful_memes_label_needs_image_and_text(sample_root: Path) -> None:
    for record in _load_jsonl(sample_root / "hateful_memes" / "dev_seen.jsonl"):
        (text_colour,) = [word for word in record["text"].split() if word in PALETTE]
        image_colours = _palette_colours(sample_root / "hateful_memes" / record["img"])
        assert len(image_colours) == 1
        assert record["label"] == int(text_colour not in image_colours)


@pytest.mark.parametrize("task", ["okvqa", "vqav2", "textvqa"])
def test_first_answer_scores_full_vqa_accuracy(
    task: str, sample_root: Path, tmp_path: Path
) -> None:
    vqa_metric = pytest.importorskip("open_flamingo.eval.vqa_metric")
    questions_file, annotations_file, _, _ = VQA_SPLITS[task]["val"]
    annotations = _load(sample_root / task / annotations_file)["annotations"]

    def accuracy(predictions: list[dict]) -> float:
        results = tmp_path / "results.json"
        results.write_text(json.dumps(predictions), encoding="utf-8")
        return vqa_metric.compute_vqa_accuracy(
            str(results),
            str(sample_root / task / questions_file),
            str(sample_root / task / annotations_file),
        )

    first = [
        {"question_id": annotation["question_id"], "answer": annotation["answers"][0]["answer"]}
        for annotation in annotations
    ]
    wrong = [
        {"question_id": annotation["question_id"], "answer": "elephant"}
        for annotation in annotations
    ]
    assert accuracy(first) == 100.0
    assert accuracy(wrong) == 0.0
