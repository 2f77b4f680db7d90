"""VQA accuracy on the real TextVQA and VizWiz val annotations, against the references.

TextVQA records carry answer_id; VizWiz records do not, so VizWiz exercises the leave-one-out
by dict equality. Predictions are derived from the human answers so that every accuracy level
occurs, including normalisation edge cases.
"""

from __future__ import annotations

import json
import random

import pytest
from metric_references import (
    REAL_ANNOTATIONS,
    official_vqa,
    openflamingo_overall,
    openflamingo_vqa,
    vqa_files,
)

from flamingo_eval.metrics.vqa import vqa_accuracy

DATASETS = ("textvqa", "vizwiz")

pytestmark = pytest.mark.skipif(
    not REAL_ANNOTATIONS.is_dir(), reason=f"real annotations not found at {REAL_ANNOTATIONS}"
)


def derive_prediction(index: int, answers: list[dict]) -> str:
    """Return one of several predictions derived from a question's answers, chosen by index."""
    second = answers[1]["answer"]
    variants = [
        second,
        second.lower(),
        second.upper(),
        f"{second}.",
        f'"{second}"!',
        f" {second} , ok",
        "",
        answers[0]["answer"].title(),
        f"the {second}",
        second.replace(" ", "-"),
    ]
    return variants[index % len(variants)]


@pytest.fixture(scope="module", params=DATASETS)
def dataset(request):
    folder = REAL_ANNOTATIONS / request.param
    annotations = json.loads((folder / "val_annotations_vqa_format.json").read_text())
    records = annotations["annotations"]
    predictions = {
        ann["question_id"]: derive_prediction(index, ann["answers"])
        for index, ann in enumerate(records)
    }
    return request.param, records, predictions


def as_inputs(records: list[dict], predictions: dict[int, str]):
    answers_by_id = {str(ann["question_id"]): ann["answers"] for ann in records}
    return {str(qid): text for qid, text in predictions.items()}, answers_by_id


def test_openflamingo_mode_matches_openflamingo(dataset, tmp_path):
    name, records, predictions = dataset
    reference_overall, reference_per_question = openflamingo_vqa(records, predictions)
    file_overall = openflamingo_overall(vqa_files(records, predictions, tmp_path))

    overall, per_question = vqa_accuracy(*as_inputs(records, predictions), mode="openflamingo")

    assert overall == file_overall
    assert overall == reference_overall
    assert per_question == {str(qid): value for qid, value in reference_per_question.items()}


def test_official_mode_matches_reference(dataset):
    name, records, predictions = dataset
    reference_overall, reference_per_question = official_vqa(records, predictions)

    overall, per_question = vqa_accuracy(*as_inputs(records, predictions), mode="official")

    assert overall == reference_overall
    assert per_question == {str(qid): value for qid, value in reference_per_question.items()}


@pytest.mark.parametrize("mode", ["openflamingo", "official"])
def test_shuffled_order_gives_same_result(dataset, mode):
    name, records, predictions = dataset
    expected = vqa_accuracy(*as_inputs(records, predictions), mode=mode)

    shuffled_records = list(records)
    random.Random(1).shuffle(shuffled_records)
    shuffled_ids = list(predictions)
    random.Random(2).shuffle(shuffled_ids)
    shuffled_predictions = {qid: predictions[qid] for qid in shuffled_ids}

    assert vqa_accuracy(*as_inputs(shuffled_records, shuffled_predictions), mode=mode) == expected


def test_subset_of_questions_is_scored_alone(dataset):
    name, records, predictions = dataset
    subset = {qid: predictions[qid] for qid in list(predictions)[:500]}
    reference_overall, _ = openflamingo_vqa(records[:500], subset)

    overall, per_question = vqa_accuracy(*as_inputs(records, subset))

    assert len(per_question) == 500
    assert overall == reference_overall
