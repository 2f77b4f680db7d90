"""Tests of the post-processors: OpenFlamingo's cuts, the strict VQA cut and the registry."""

from __future__ import annotations

import json
import random

import pytest
from metric_references import REAL_ANNOTATIONS
from open_flamingo.eval.vqa_metric import postprocess_vqa_generation

from flamingo_eval.errors import InputError
from flamingo_eval.postprocess import (
    POSTPROCESSORS,
    apply_postprocess,
    check_postprocess,
    cut_caption,
    cut_vqa_answer,
    cut_vqa_answer_strict,
)

GENERATIONS = [
    "", "yes", " yes", "yes\nQuestion: what?", "Shorts", "red, white and blue", "red,white",
    "cat Short answer: dog", "QuestionAnswer", "answer", "Answer: no", "two, three, four",
    "blue<|endofchunk|>Question:", " 3 Answer", "a, b", ", leading", "trailing, ", "x\n\ny",
    "Shorts, pants", "ShortQuestion", "no Question", "one,\ttwo", "yes Answer, no",
]


def generated_texts() -> list[str]:
    """Hand cases plus random splices of stop words, commas and newlines into answers."""
    pieces = ["Question", "Answer", "Short", ", ", ",", "\n", " ", "<|endofchunk|>", "Output",
              '"', "yes", "red", "Shorts", "answer:", "two dogs"]
    rng = random.Random(0)
    texts = list(GENERATIONS)
    for _ in range(500):
        texts.append("".join(rng.choice(pieces) for _ in range(rng.randint(1, 8))))
    return texts


@pytest.mark.parametrize("text", generated_texts())
def test_vqa_answer_matches_openflamingo(text):
    assert cut_vqa_answer(text) == postprocess_vqa_generation(text)


@pytest.mark.skipif(not REAL_ANNOTATIONS.is_dir(), reason="real annotations not found")
def test_vqa_answer_matches_openflamingo_on_real_answers():
    annotations = json.loads(
        (REAL_ANNOTATIONS / "textvqa" / "val_annotations_vqa_format.json").read_text()
    )["annotations"]
    answers = {record["answer"] for ann in annotations for record in ann["answers"]}
    texts = [f"{answer}\nQuestion: next Short answer:" for answer in sorted(answers)]
    assert [cut_vqa_answer(text) for text in texts] == [
        postprocess_vqa_generation(text) for text in texts
    ]


def test_vqa_answer_loses_known_answers():
    # The reproduced heuristic cuts these real answers; the strict option keeps them.
    assert cut_vqa_answer("Shorts") == ""
    assert cut_vqa_answer("red, white and blue") == "red"
    assert cut_vqa_answer_strict("Shorts") == "Shorts"
    assert cut_vqa_answer_strict("red, white and blue") == "red, white and blue"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" red, white and blue\nQuestion: what?", "red, white and blue"),
        ("Shorts<|endofchunk|>Question", "Shorts"),
        ("yes", "yes"),
        ("\nyes", ""),
        ("  two dogs  ", "two dogs"),
        ("a<|endofchunk|>b\nc", "a"),
    ],
)
def test_vqa_answer_strict_cuts(text, expected):
    assert cut_vqa_answer_strict(text) == expected


def reference_caption(text: str) -> str:
    """OpenFlamingo's caption post-processing: its cut, then the quote removal it applies."""
    try:
        from open_flamingo.eval.coco_metric import postprocess_captioning_generation
    except ImportError:
        return text.split("Output", 1)[0].replace('"', "")
    return postprocess_captioning_generation(text).replace('"', "")


@pytest.mark.parametrize("text", generated_texts()[:200])
def test_caption_matches_openflamingo(text):
    assert cut_caption(text) == reference_caption(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('A "dog" on grass.Output: a cat', "A dog on grass."),
        ("a man riding a bike", "a man riding a bike"),
        ("Output: x", ""),
        ('""', ""),
    ],
)
def test_caption_by_hand(text, expected):
    assert cut_caption(text) == expected


def test_apply_in_order():
    text = "two dogs, Question: x"
    assert apply_postprocess(["vqa_answer"], text) == "two dogs"
    assert apply_postprocess([], text) == text
    assert apply_postprocess(["vqa_answer_strict", "vqa_answer"], "a, b\nc") == "a"


def test_registry_names():
    assert set(POSTPROCESSORS) == {"vqa_answer", "vqa_answer_strict", "okvqa_stem", "caption"}


def test_unknown_name_raises():
    with pytest.raises(InputError, match="unknown post-processor 'vqa'"):
        apply_postprocess(["vqa"], "yes")
    with pytest.raises(InputError, match="unknown post-processor 'vqa'"):
        check_postprocess(["vqa_answer", "vqa"])
