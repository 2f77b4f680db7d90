"""Tests of the VQA-format loader: the join by question_id, fields, targets and every input error."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from data_builders import write_image, write_json

from flamingo_eval.data import files
from flamingo_eval.data.vqa import load_vqa
from flamingo_eval.errors import InputError

REAL_ANNOTATIONS = Path("/work/shared/data/real_annotations")

SETTINGS = {
    "questions": "questions.json",
    "annotations": "annotations.json",
    "images": "images",
    "image_file": "COCO_val2014_{image_id:012d}.jpg",
}


def answer_records(question_id: int) -> list[dict]:
    """Ten answer records that differ from question to question, VQAv2 style."""
    return [
        {"answer": f"answer {question_id}-{index}", "answer_confidence": "yes", "answer_id": index + 1}
        for index in range(10)
    ]


def make_vqa_folder(
    root: Path, question_ids=(11, 12, 13), image_ids=(5, 5, 7), shuffle_annotations=False
) -> Path:
    questions = [
        {"question_id": qid, "image_id": image_id, "question": f"question {qid}?"}
        for qid, image_id in zip(question_ids, image_ids)
    ]
    annotations = [
        {
            "question_id": qid,
            "image_id": image_id,
            "question_type": "what",
            "answer_type": "other",
            "multiple_choice_answer": f"answer {qid}-0",
            "answers": answer_records(qid),
        }
        for qid, image_id in zip(question_ids, image_ids)
    ]
    if shuffle_annotations:
        random.Random(3).shuffle(annotations)
    write_json(root / "questions.json", {"info": {}, "questions": questions})
    write_json(root / "annotations.json", {"info": {}, "annotations": annotations})
    for image_id in set(image_ids):
        write_image(root / "images" / f"COCO_val2014_{image_id:012d}.jpg")
    return root


def test_vqa_fields_and_targets(tmp_path):
    examples = load_vqa(SETTINGS, make_vqa_folder(tmp_path), "val")

    assert [example.id for example in examples] == ["11", "12", "13"]
    first = examples[0]
    assert first.fields == {"question": "question 11?", "answer": "answer 11-0", "image_id": 5}
    assert first.target == answer_records(11)
    assert first.image.key == "5"
    assert first.image.path == tmp_path / "images" / "COCO_val2014_000000000005.jpg"
    assert first.image.open().size == (4, 4)


def test_vqa_shares_image_refs(tmp_path):
    examples = load_vqa(SETTINGS, make_vqa_folder(tmp_path), "val")

    assert examples[0].image is examples[1].image
    assert examples[2].image.key == "7"


def test_vqa_join_ignores_annotation_order(tmp_path):
    ordered = load_vqa(SETTINGS, make_vqa_folder(tmp_path / "a", range(1, 30), [1] * 29), "val")
    shuffled_folder = make_vqa_folder(tmp_path / "b", range(1, 30), [1] * 29, shuffle_annotations=True)
    annotations = json.loads((shuffled_folder / "annotations.json").read_text())["annotations"]
    assert [record["question_id"] for record in annotations] != list(range(1, 30))

    shuffled = load_vqa(SETTINGS, shuffled_folder, "val")

    assert [example.id for example in shuffled] == [example.id for example in ordered]
    assert [example.target for example in shuffled] == [example.target for example in ordered]
    for example in shuffled:
        assert example.target == answer_records(int(example.id))


def test_vqa_without_annotations(tmp_path):
    make_vqa_folder(tmp_path)
    settings = {key: value for key, value in SETTINGS.items() if key != "annotations"}

    examples = load_vqa(settings, tmp_path, "testdev")

    assert [example.target for example in examples] == [None, None, None]
    assert [example.fields["answer"] for example in examples] == ["", "", ""]


def test_vqa_annotations_without_optional_fields(tmp_path):
    """TextVQA and VizWiz answer records lack answer_id; annotations lack answer_type."""
    write_json(
        tmp_path / "q.json",
        {"questions": [{"question_id": 0, "image_id": "VizWiz_val_00000000.jpg", "question": "What?"}]},
    )
    records = [{"answer": "unanswerable", "answer_confidence": "yes"}] * 10
    write_json(
        tmp_path / "a.json",
        {"annotations": [{"question_id": 0, "image_id": "VizWiz_val_00000000.jpg", "answers": records}]},
    )
    write_image(tmp_path / "val" / "VizWiz_val_00000000.jpg")
    settings = {"questions": "q.json", "annotations": "a.json", "images": "val", "image_file": "{image_id}"}

    [example] = load_vqa(settings, tmp_path, "val")

    assert example.id == "0"
    assert example.target == records
    assert example.fields["image_id"] == "VizWiz_val_00000000.jpg"
    assert example.image.path == tmp_path / "val" / "VizWiz_val_00000000.jpg"


def test_vqa_identical_records_compare_equal(tmp_path):
    """Records shared between questions still compare equal to the file's records."""
    make_vqa_folder(tmp_path, (1, 2), (5, 5))
    same = [{"answer": "yes", "answer_confidence": "yes", "answer_id": 1}]
    write_json(
        tmp_path / "annotations.json",
        {"annotations": [{"question_id": qid, "image_id": 5, "answers": same} for qid in (1, 2)]},
    )

    examples = load_vqa(SETTINGS, tmp_path, "val")

    assert examples[0].target == same
    assert examples[1].target == same


def rewrite(path: Path, edit) -> None:
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


def expect_error(tmp_path: Path, *words: str, settings=SETTINGS) -> None:
    with pytest.raises(InputError) as caught:
        load_vqa(settings, tmp_path, "val")
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_vqa_missing_questions_file(tmp_path):
    make_vqa_folder(tmp_path)
    (tmp_path / "questions.json").unlink()
    expect_error(tmp_path, "questions.json", "not found")


def test_vqa_missing_annotations_file(tmp_path):
    make_vqa_folder(tmp_path)
    (tmp_path / "annotations.json").unlink()
    expect_error(tmp_path, "annotations.json", "not found")


def test_vqa_missing_setting(tmp_path):
    make_vqa_folder(tmp_path)
    settings = {key: value for key, value in SETTINGS.items() if key != "image_file"}
    expect_error(tmp_path, "image_file", settings=settings)


def test_vqa_question_missing_field(tmp_path):
    make_vqa_folder(tmp_path)
    rewrite(tmp_path / "questions.json", lambda doc: doc["questions"][1].pop("question"))
    expect_error(tmp_path, "questions.json", "question_id 12", "'question'")


def test_vqa_question_missing_id(tmp_path):
    make_vqa_folder(tmp_path)
    rewrite(tmp_path / "questions.json", lambda doc: doc["questions"][2].pop("question_id"))
    expect_error(tmp_path, "questions.json", "questions[2]", "'question_id'")


def test_vqa_annotation_missing_answers(tmp_path):
    make_vqa_folder(tmp_path)
    rewrite(tmp_path / "annotations.json", lambda doc: doc["annotations"][0].pop("answers"))
    expect_error(tmp_path, "annotations.json", "question_id 11", "'answers'")


def test_vqa_answer_record_missing_answer(tmp_path):
    make_vqa_folder(tmp_path)
    rewrite(tmp_path / "annotations.json", lambda doc: doc["annotations"][0]["answers"][3].pop("answer"))
    expect_error(tmp_path, "annotations.json", "question_id 11", "answers[3]")


def test_vqa_question_without_annotation(tmp_path):
    make_vqa_folder(tmp_path)
    rewrite(tmp_path / "annotations.json", lambda doc: doc["annotations"].pop(1))
    expect_error(tmp_path, "annotations.json", "no annotation for question_id 12")


def test_vqa_annotation_without_question(tmp_path):
    make_vqa_folder(tmp_path)
    rewrite(tmp_path / "questions.json", lambda doc: doc["questions"].pop(0))
    expect_error(tmp_path, "annotations.json", "question_id 11", "questions.json")


def test_vqa_duplicate_question_id(tmp_path):
    make_vqa_folder(tmp_path)
    rewrite(tmp_path / "questions.json", lambda doc: doc["questions"].append(doc["questions"][0]))
    expect_error(tmp_path, "questions.json", "duplicate question_id 11")


def test_vqa_duplicate_annotation(tmp_path):
    make_vqa_folder(tmp_path)
    rewrite(tmp_path / "annotations.json", lambda doc: doc["annotations"].append(doc["annotations"][2]))
    expect_error(tmp_path, "annotations.json", "duplicate annotation", "question_id 13")


def test_vqa_image_id_mismatch(tmp_path):
    make_vqa_folder(tmp_path)
    rewrite(tmp_path / "annotations.json", lambda doc: doc["annotations"][2].update(image_id=99))
    expect_error(tmp_path, "annotations.json", "question_id 13", "99")


def test_vqa_malformed_json(tmp_path):
    make_vqa_folder(tmp_path)
    text = (tmp_path / "annotations.json").read_text()
    (tmp_path / "annotations.json").write_text(text[:-20])
    expect_error(tmp_path, "annotations.json", "invalid JSON", "line 1")


def test_vqa_wrong_top_level_key(tmp_path):
    make_vqa_folder(tmp_path)
    rewrite(tmp_path / "questions.json", lambda doc: doc.update(items=doc.pop("questions")))
    expect_error(tmp_path, "questions.json", "'questions'")


def test_vqa_missing_image(tmp_path):
    make_vqa_folder(tmp_path)
    (tmp_path / "images" / "COCO_val2014_000000000007.jpg").unlink()
    expect_error(tmp_path, "COCO_val2014_000000000007.jpg", "question_id 13", "not found")


def test_vqa_pattern_does_not_fit_id(tmp_path):
    make_vqa_folder(tmp_path)
    rewrite(tmp_path / "questions.json", lambda doc: doc["questions"][0].update(image_id="abc"))
    rewrite(tmp_path / "annotations.json", lambda doc: doc["annotations"][0].update(image_id="abc"))
    expect_error(tmp_path, "image_file", "'abc'", "question_id 11")


def test_vqa_corrupt_image_fails_on_open(tmp_path):
    make_vqa_folder(tmp_path)
    (tmp_path / "images" / "COCO_val2014_000000000005.jpg").write_bytes(b"not an image")
    examples = load_vqa(SETTINGS, tmp_path, "val")

    with pytest.raises(InputError) as caught:
        examples[0].image.open()
    assert "COCO_val2014_000000000005.jpg" in str(caught.value)


def load_real_questions_and_answers(folder: Path, prefix: str) -> tuple[list, dict]:
    """Read a real split with plain json, as the reference for the loader's join."""
    questions = json.loads((folder / f"{prefix}_questions_vqa_format.json").read_text())["questions"]
    annotations = json.loads((folder / f"{prefix}_annotations_vqa_format.json").read_text())["annotations"]
    return questions, {record["question_id"]: record["answers"] for record in annotations}


@pytest.fixture
def checked_images(monkeypatch) -> list[Path]:
    """Record the image paths the loader checks, and report every image as present."""
    paths: list[Path] = []

    def record(path: Path) -> bool:
        paths.append(path)
        return True

    monkeypatch.setattr(files, "file_exists", record)
    return paths


@pytest.mark.skipif(not REAL_ANNOTATIONS.is_dir(), reason="real annotation files not present")
@pytest.mark.parametrize(
    ("benchmark", "image_file", "count"),
    [
        ("textvqa", "{image_id}.jpg", 5000),
        ("vizwiz", "{image_id}", 4319),
    ],
)
def test_vqa_real_annotations(tmp_path, checked_images, benchmark, image_file, count):
    source = REAL_ANNOTATIONS / benchmark
    questions, answers = load_real_questions_and_answers(source, "val")
    settings = {
        "questions": "val_questions_vqa_format.json",
        "annotations": "val_annotations_vqa_format.json",
        "images": "images",
        "image_file": image_file,
    }

    examples = load_vqa(settings, source, "val")

    assert len(examples) == count
    assert [example.id for example in examples] == [str(q["question_id"]) for q in questions]
    for example, question in zip(examples, questions):
        assert example.fields["question"] == question["question"]
        assert example.target == answers[question["question_id"]]
        assert example.fields["answer"] == answers[question["question_id"]][0]["answer"]
        assert len(example.target) == 10
        assert example.image.path == source / "images" / image_file.format(image_id=question["image_id"])
    assert set(checked_images) == {example.image.path for example in examples}


@pytest.mark.skipif(not REAL_ANNOTATIONS.is_dir(), reason="real annotation files not present")
def test_vqa_real_vizwiz_test_questions(checked_images):
    source = REAL_ANNOTATIONS / "vizwiz"
    questions = json.loads((source / "test_questions_vqa_format.json").read_text())["questions"]
    settings = {"questions": "test_questions_vqa_format.json", "images": "test", "image_file": "{image_id}"}

    examples = load_vqa(settings, source, "testdev")

    assert len(examples) == len(questions)
    assert all(example.target is None for example in examples)
    assert examples[0].image.path == source / "test" / "VizWiz_test_00000000.jpg"
    assert len(checked_images) == len(questions)
