"""OK-VQA v1.1 and VQAv2 samples in their official layouts (COCO-style image files and ids)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from flamingo_eval.sample_data.files import (
    EVAL_SIZE,
    SAMPLE_INFO,
    SAMPLE_LICENSE,
    TEST_SIZE,
    TRAIN_SIZE,
    write_json,
)
from flamingo_eval.sample_data.questions import (
    QuestionAnswer,
    annotator_answers,
    confidences,
    scenes_with_questions,
)
from flamingo_eval.sample_data.scenes import Scene, derived_rng, render, save_jpeg

# Largest COCO 2014 image id, so sample ids look like real ones.
COCO_MAX_IMAGE_ID = 581929
# Relative weights of one, two or three questions per image. Most OK-VQA images have one
# question, while VQAv2 has several questions for every image.
OKVQA_QUESTIONS_PER_IMAGE = {1: 5, 2: 3, 3: 2}
VQAV2_QUESTIONS_PER_IMAGE = {1: 2, 2: 3, 3: 3}


def write_okvqa(out_dir: Path, seed: int) -> None:
    """Write OK-VQA v1.1's question and annotation files for train2014 and val2014, with images.

    Question ids are image_id * 10 + k, as in OK-VQA. Answers are stored stemmed and the
    unstemmed text is kept in "raw_answer".
    """
    rng = derived_rng("okvqa", seed)
    image_ids = iter(rng.sample(range(1, COCO_MAX_IMAGE_ID + 1), TRAIN_SIZE + EVAL_SIZE))
    for subtype, size in (("train2014", TRAIN_SIZE), ("val2014", EVAL_SIZE)):
        questions: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for scene, items in scenes_with_questions(rng, size, OKVQA_QUESTIONS_PER_IMAGE):
            image_id = next(image_ids)
            _save_coco_image(out_dir, subtype, image_id, scene)
            for index, item in enumerate(items):
                question_id = image_id * 10 + index
                questions.append(_question(image_id, item, question_id))
                annotations.append(_okvqa_annotation(rng, image_id, question_id, item))

        header = _header(subtype)
        write_json(
            out_dir / f"OpenEnded_mscoco_{subtype}_questions.json",
            {**header, "task_type": "Open-Ended", "questions": questions},
        )
        write_json(
            out_dir / f"mscoco_{subtype}_annotations.json", {**header, "annotations": annotations}
        )


def _okvqa_annotation(
    rng: random.Random, image_id: int, question_id: int, item: QuestionAnswer
) -> dict[str, Any]:
    records = []
    for answer_id, raw in enumerate(annotator_answers(rng, item.answer), start=1):
        stemmed = item.stemmed if raw == item.answer else raw
        records.append(
            {
                "answer_id": answer_id,
                "raw_answer": raw,
                "answer_confidence": "yes",
                "answer": stemmed,
            }
        )
    # OK-VQA files label every question "other"; its question_type is a knowledge category.
    return {
        "image_id": image_id,
        "answer_type": "other",
        "question_type": "other",
        "question_id": question_id,
        "answers": records,
        "confidence": 3,
    }


def write_vqav2(out_dir: Path, seed: int) -> None:
    """Write VQAv2's train2014 and val2014 files with images, and unannotated test-dev2015
    questions whose images sit in test2015/. Question ids are image_id * 1000 + k, as in VQAv2."""
    rng = derived_rng("vqav2", seed)
    splits = (("train2014", TRAIN_SIZE), ("val2014", EVAL_SIZE), ("test-dev2015", TEST_SIZE))
    image_count = sum(size for _, size in splits)
    image_ids = iter(rng.sample(range(1, COCO_MAX_IMAGE_ID + 1), image_count))
    for subtype, size in splits:
        image_folder = "test2015" if subtype == "test-dev2015" else subtype
        questions: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for scene, items in scenes_with_questions(rng, size, VQAV2_QUESTIONS_PER_IMAGE):
            image_id = next(image_ids)
            _save_coco_image(out_dir, image_folder, image_id, scene)
            for index, item in enumerate(items):
                question_id = image_id * 1000 + index
                questions.append(_question(image_id, item, question_id))
                annotations.append(_vqav2_annotation(rng, image_id, question_id, item))

        header = _header(subtype)
        write_json(
            out_dir / f"v2_OpenEnded_mscoco_{subtype}_questions.json",
            {**header, "task_type": "Open-Ended", "questions": questions},
        )
        if subtype != "test-dev2015":
            write_json(
                out_dir / f"v2_mscoco_{subtype}_annotations.json",
                {**header, "annotations": annotations},
            )


def _vqav2_annotation(
    rng: random.Random, image_id: int, question_id: int, item: QuestionAnswer
) -> dict[str, Any]:
    answers = annotator_answers(rng, item.answer)
    records = [
        {"answer": answer, "answer_confidence": confidence, "answer_id": answer_id}
        for answer_id, (answer, confidence) in enumerate(
            zip(answers, confidences(rng, answers, item.answer)), start=1
        )
    ]
    return {
        "question_type": item.question_type,
        "multiple_choice_answer": Counter(answers).most_common(1)[0][0],
        "answers": records,
        "image_id": image_id,
        "answer_type": item.answer_type,
        "question_id": question_id,
    }


def _question(image_id: int, item: QuestionAnswer, question_id: int) -> dict[str, Any]:
    return {"image_id": image_id, "question": item.question, "question_id": question_id}


def _header(subtype: str) -> dict[str, Any]:
    return {
        "info": SAMPLE_INFO,
        "license": SAMPLE_LICENSE,
        "data_subtype": subtype,
        "data_type": "mscoco",
    }


def _save_coco_image(out_dir: Path, folder: str, image_id: int, scene: Scene) -> None:
    save_jpeg(render(scene), out_dir / folder / f"COCO_{folder}_{image_id:012d}.jpg")
