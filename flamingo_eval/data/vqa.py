"""Loader for the VQA file layout (VQAv2, OK-VQA, TextVQA and VizWiz in VQA format).

A split is a questions file ({"questions": [{question_id, image_id, question}, ...]}), an optional
annotations file ({"annotations": [{question_id, image_id, answers: [{answer, ...}, ...]}, ...]})
joined to it by question_id, and an image folder. Split settings:

- `questions`: questions file, relative to the data folder.
- `annotations`: annotations file; without it (test-dev) every target is None.
- `images`: image folder, relative to the data folder.
- `image_file`: file name pattern, formatted with `image_id`, e.g.
  "COCO_val2014_{image_id:012d}.jpg", or "{image_id}" when the ids are file names (VizWiz).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flamingo_eval.data.example import Example
from flamingo_eval.data.files import (
    ImageIndex,
    data_file,
    optional_setting,
    read_json,
    require_field,
    require_list,
    split_setting,
)
from flamingo_eval.errors import InputError

logger = logging.getLogger(__name__)


def load_vqa(settings: dict[str, Any], data_dir: Path, split: str) -> list[Example]:
    """Load one split of a VQA-format benchmark, one Example per question.

    Example ids are str(question_id). fields: question, answer (the first annotator's answer,
    "" without annotations) and image_id. target: the annotation's answer records as in the
    file, or None without annotations.

    NOTE: identical answer records are parsed into one shared dict, which keeps VQAv2-size
    annotation files within a few hundred MB; metric code must not modify the records.
    """
    questions_path = data_file(data_dir, split_setting(settings, "questions", split))
    annotations_name = optional_setting(settings, "annotations", split)
    image_folder = data_dir / split_setting(settings, "images", split)
    image_file = split_setting(settings, "image_file", split)

    questions = _read_questions(questions_path)
    answers_by_id = None
    if annotations_name is not None:
        annotations_path = data_file(data_dir, annotations_name)
        answers_by_id = _read_annotations(annotations_path, questions, questions_path)

    images = ImageIndex(image_folder, questions_path)
    examples = []
    for question_id, (image_id, question) in questions.items():
        relative = _image_file_name(image_file, image_id, question_id, questions_path)
        image = images.ref(str(image_id), relative, f"question_id {question_id}")
        if answers_by_id is None:
            target = None
            answer = ""
        else:
            target = answers_by_id[question_id]
            answer = target[0]["answer"]
        fields = {"question": question, "answer": answer, "image_id": image_id}
        examples.append(Example(id=question_id, image=image, fields=fields, target=target))
    images.check()

    logger.info("loaded %d questions of split %s from %s", len(examples), split, questions_path)
    return examples


def _read_questions(path: Path) -> dict[str, tuple[Any, str]]:
    """Return (image_id, question) by str(question_id), in file order."""
    records = require_list(read_json(path), "questions", path)
    questions: dict[str, tuple[Any, str]] = {}
    for index, record in enumerate(records):
        where = f"questions[{index}]"
        question_id = require_field(record, "question_id", path, where)
        where = f"question_id {question_id}"
        image_id = require_field(record, "image_id", path, where)
        question = require_field(record, "question", path, where)
        if not isinstance(question, str):
            raise InputError(f"{path}: {where} has a non-string 'question'")
        key = str(question_id)
        if key in questions:
            raise InputError(f"{path}: duplicate question_id {question_id}; ids must be unique")
        questions[key] = (image_id, question)
    return questions


def _read_annotations(
    path: Path, questions: dict[str, tuple[Any, str]], questions_path: Path
) -> dict[str, list[dict[str, Any]]]:
    """Return each question's answer records, joined by question_id.

    Raises InputError for a duplicate question_id, an annotation whose question or image id
    disagrees with the questions file, and a question without an annotation.
    """
    records = require_list(read_json(path, object_pairs_hook=_AnswerRecordCache()), "annotations", path)
    answers_by_id: dict[str, list[dict[str, Any]]] = {}
    for index, record in enumerate(records):
        question_id = require_field(record, "question_id", path, f"annotations[{index}]")
        where = f"annotation of question_id {question_id}"
        answers = require_field(record, "answers", path, where)
        if not isinstance(answers, list) or not answers:
            raise InputError(f"{path}: {where} has no answers; expected a non-empty list")
        for answer_index, answer in enumerate(answers):
            require_field(answer, "answer", path, f"{where}, answers[{answer_index}]")

        key = str(question_id)
        if key in answers_by_id:
            raise InputError(f"{path}: duplicate annotation for question_id {question_id}")
        if key not in questions:
            raise InputError(
                f"{path}: question_id {question_id} is not in {questions_path}; "
                "check that the questions and annotations files belong to the same split"
            )
        image_id = record.get("image_id", questions[key][0])
        if image_id != questions[key][0]:
            raise InputError(
                f"{path}: question_id {question_id} has image_id {image_id!r}, but "
                f"{questions_path} gives {questions[key][0]!r}; the files do not match"
            )
        answers_by_id[key] = answers

    if len(answers_by_id) < len(questions):
        missing = next(key for key in questions if key not in answers_by_id)
        count = len(questions) - len(answers_by_id)
        raise InputError(
            f"{path}: no annotation for question_id {missing} of {questions_path} "
            f"({count} questions lack one); check that the files belong to the same split"
        )
    return answers_by_id


def _image_file_name(pattern: str, image_id: Any, question_id: str, questions_path: Path) -> str:
    try:
        return pattern.format(image_id=image_id)
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise InputError(
            f"{questions_path}: image_file pattern {pattern!r} does not fit image_id "
            f"{image_id!r} of question_id {question_id} ({error})"
        ) from None


class _AnswerRecordCache:
    """`object_pairs_hook` for json.load that returns one shared dict per distinct answer record.

    VQAv2 train has 4.4 million answer records but far fewer distinct ones ("yes" with
    answer_id 1 and confidence "yes" occurs tens of thousands of times).
    """

    def __init__(self) -> None:
        self._records: dict[tuple, dict[str, Any]] = {}

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        record = dict(pairs)
        if "question_id" in record:
            # An annotation: keep only what the loader reads, so the parsed file stays small.
            return {key: record[key] for key in ("question_id", "image_id", "answers") if key in record}
        if "answer" not in record:
            return record
        try:
            return self._records.setdefault(tuple(pairs), record)
        except TypeError:  # a list or object inside the record: leave it unshared
            return record
