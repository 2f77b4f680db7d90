"""TextVQA and VizWiz samples in the VQA-format files that OpenFlamingo's evaluation reads."""

from __future__ import annotations

import dataclasses
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
from flamingo_eval.sample_data.questions import ANSWER_VARIANTS, annotator_answers, confidences
from flamingo_eval.sample_data.scenes import (
    BACKGROUNDS,
    SHAPES,
    Scene,
    derived_rng,
    random_scene,
    render,
    save_jpeg,
)

SIGN_WORDS = ("stop", "open", "exit", "taxi", "cafe", "sale", "park", "bus")
SIGN_NUMBERS = tuple(str(number) for number in range(1, 10))
# Yellow and orange writing would be hard to read on the white sign.
TEXT_COLOURS = ("black", "red", "blue", "green", "purple")
TEXT_VARIANTS = {
    **{word: f"{word} sign" for word in SIGN_WORDS},
    "5": "five",
    "6": "six",
    "7": "seven",
    "8": "eight",
    "9": "nine",
    **ANSWER_VARIANTS,
}
UNANSWERABLE_VARIANTS = {"dark": "too dark", "blank": "blank"}


def write_textvqa(out_dir: Path, seed: int) -> None:
    """Write TextVQA's train and val VQA-format files and images.

    Every image shows a word or digit on a white sign. Image ids are 16 hex digits, and val
    images sit in train_images/ next to the train images, as in TextVQA.
    """
    rng = derived_rng("textvqa", seed)
    next_question_id = 0
    splits = (("train", "TextVQA-train", TRAIN_SIZE), ("val", "TextVQA-validation", EVAL_SIZE))
    for split, subtype, size in splits:
        questions: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        while len(questions) < size:
            scene = dataclasses.replace(
                random_scene(rng, max_objects=3, rows=2, backgrounds=("white", "gray")),
                text=rng.choice(SIGN_WORDS + SIGN_NUMBERS),
                text_colour=rng.choice(TEXT_COLOURS),
            )
            image_id = f"{rng.getrandbits(64):016x}"
            save_jpeg(render(scene), out_dir / "train_images" / f"{image_id}.jpg")
            for question, answer in _text_questions(scene, rng)[: size - len(questions)]:
                questions.append(
                    {"question": question, "image_id": image_id, "question_id": next_question_id}
                )
                answers = annotator_answers(rng, answer, TEXT_VARIANTS)
                annotations.append(
                    {
                        "question_id": next_question_id,
                        "image_id": image_id,
                        "question_type": "none of the above",
                        "answers": [
                            {"answer": text, "answer_confidence": "yes", "answer_id": answer_id}
                            for answer_id, text in enumerate(answers, start=1)
                        ],
                        "multiple_choice_answer": answers[0],
                    }
                )
                next_question_id += 1

        _write_vqa_format(out_dir, split, subtype, "TextVQA", questions, annotations)


def _text_questions(scene: Scene, rng: random.Random) -> list[tuple[str, str]]:
    """Return a question about the sign's text and, for about 40% of scenes, one about the
    text's colour, each with its answer."""
    if scene.text is None:
        raise ValueError("a TextVQA scene needs text on its sign")
    if scene.text.isdigit():
        reading = rng.choice(["what number is written on the sign?", "what number is shown?"])
    else:
        reading = rng.choice(["what does the sign say?", "what word is written on the sign?"])
    questions = [(reading, scene.text)]
    if rng.random() < 0.4:
        questions.append(("what color is the writing?", scene.text_colour))
    return questions


def write_vizwiz(out_dir: Path, seed: int) -> None:
    """Write VizWiz's train and val VQA-format files, unannotated test questions, and images.

    One question per image, as in VizWiz. About one image in five is nearly black or empty, and
    its answer is "unanswerable". Answer records carry no answer_id, as in the VizWiz files.
    """
    rng = derived_rng("vizwiz", seed)
    splits = (
        ("train", "VizWiz-train", TRAIN_SIZE),
        ("val", "VizWiz-validation", EVAL_SIZE),
        ("test", "", TEST_SIZE),
    )
    for split, subtype, size in splits:
        questions: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for index in range(size):
            image_name = f"VizWiz_{split}_{index:08d}.jpg"
            scene, question, answer, answer_type = _vizwiz_item(rng)
            save_jpeg(render(scene), out_dir / split / image_name)
            questions.append({"question": question, "image_id": image_name, "question_id": index})

            reason = "dark" if scene.brightness < 1 else "blank"
            variants = {**ANSWER_VARIANTS, "unanswerable": UNANSWERABLE_VARIANTS[reason]}
            answers = annotator_answers(rng, answer, variants)
            annotations.append(
                {
                    "question_id": index,
                    "image_id": image_name,
                    "question_type": answer_type,
                    "answers": [
                        {"answer": text, "answer_confidence": confidence}
                        for text, confidence in zip(answers, confidences(rng, answers, answer))
                    ],
                    "multiple_choice_answer": Counter(answers).most_common(1)[0][0],
                }
            )

        if split == "test":
            write_json(out_dir / "test_questions_vqa_format.json", {"questions": questions})
        else:
            _write_vqa_format(out_dir, split, subtype, "VizWiz", questions, annotations)


def _vizwiz_item(rng: random.Random) -> tuple[Scene, str, str, str]:
    """Draw a scene and a question about it; return them with the answer and VizWiz's type."""
    kind = rng.choice(["colour", "shape", "yes/no", "number"])
    if kind == "number":
        scene = random_scene(rng, min_objects=1, max_objects=4)
        question = rng.choice(
            ["How many shapes are in this picture?", "How many things are there?"]
        )
        answer = str(len(scene.objects))
    else:
        scene = random_scene(rng, min_objects=1, max_objects=1)
        obj = scene.objects[0]
        if kind == "colour":
            question = rng.choice(["What color is this?", "Can you tell me what color this is?"])
            answer = obj.colour
        elif kind == "shape":
            question = rng.choice(["What shape is this?", "What is this?"])
            answer = obj.shape
        else:
            named_shape = rng.choice(SHAPES)
            question = f"Is this a {named_shape}?"
            answer = "yes" if named_shape == obj.shape else "no"
    answer_type = "other" if kind in ("colour", "shape") else kind

    unreadable = rng.random()
    if unreadable < 0.1:
        return dataclasses.replace(scene, brightness=0.04), question, "unanswerable", "unanswerable"
    if unreadable < 0.2:
        blank = Scene(background=rng.choice(list(BACKGROUNDS)), objects=())
        return blank, question, "unanswerable", "unanswerable"
    return scene, question, answer, answer_type


def _write_vqa_format(
    out_dir: Path,
    split: str,
    subtype: str,
    dataset: str,
    questions: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
) -> None:
    common = {"info": SAMPLE_INFO, "license": SAMPLE_LICENSE, "data_subtype": subtype}
    write_json(
        out_dir / f"{split}_questions_vqa_format.json",
        {"questions": questions, **common, "task_type": "Open-Ended", "data_type": dataset},
    )
    write_json(
        out_dir / f"{split}_annotations_vqa_format.json",
        {"annotations": annotations, **common, "task_type": dataset},
    )

