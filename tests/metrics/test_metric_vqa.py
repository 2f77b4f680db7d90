"""Tests of VQA accuracy and answer normalisation against the two reference implementations."""

from __future__ import annotations

import pytest
from metric_references import (
    METRIC_CASES,
    answer_records,
    official_vqa,
    openflamingo_vqa,
)
from open_flamingo.eval.vqa_metric import VQAEval

from flamingo_eval.errors import InputError
from flamingo_eval.metrics.vqa import question_accuracy, vqa_accuracy
from flamingo_eval.metrics.vqa_normalization import (
    CONTRACTIONS,
    NUMBER_WORDS,
    PUNCTUATION,
    clean_whitespace,
    normalize_answer,
)

CASES = METRIC_CASES["vqa_accuracy"]["cases"]
MODES = {"openflamingo": "openflamingo", "official": "official_head"}


def annotation(question_id: int, records: list[dict]) -> dict:
    return {"question_id": question_id, "image_id": 0, "question_type": "none", "answers": records}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case['prediction']!r}")
def test_case_values_with_answer_ids(case, mode):
    records = answer_records(case["answers"], with_ids=True)
    assert question_accuracy(case["prediction"], records, mode) == case[MODES[mode]]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_case_values_through_vqa_accuracy(mode):
    predictions = {str(index): case["prediction"] for index, case in enumerate(CASES)}
    answers = {str(index): answer_records(case["answers"]) for index, case in enumerate(CASES)}
    overall, per_question = vqa_accuracy(predictions, answers, mode)
    expected = [case[MODES[mode]] for case in CASES]
    assert per_question == {str(index): value for index, value in enumerate(expected)}
    assert overall == round(sum(expected) / len(expected), 2)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_cases_without_answer_ids_match_references(mode):
    annotations = [annotation(index, answer_records(case["answers"], with_ids=False))
                   for index, case in enumerate(CASES)]
    predictions = {index: case["prediction"] for index, case in enumerate(CASES)}
    reference = openflamingo_vqa if mode == "openflamingo" else official_vqa
    expected_overall, expected = reference(annotations, predictions)

    overall, per_question = vqa_accuracy(
        {str(qid): text for qid, text in predictions.items()},
        {str(ann["question_id"]): ann["answers"] for ann in annotations},
        mode,
    )
    assert per_question == {str(qid): value for qid, value in expected.items()}
    assert overall == expected_overall


def test_missing_ids_drop_equal_records_together():
    # "yes" against 8 "yes" + 2 "no": with ids every held-out "yes" leaves 7 matches (100).
    # Without ids, holding out one "yes" removes all eight equal records, so only the two
    # held-out "no" folds count 8 matches: (2 * 1.0 + 8 * 0.0) / 10 = 20.
    answers = ["yes"] * 8 + ["no"] * 2
    assert question_accuracy("yes", answer_records(answers, with_ids=True)) == 100.0
    assert question_accuracy("yes", answer_records(answers, with_ids=False)) == 20.0


def test_records_equal_only_after_normalisation():
    # "Yes" and "yes" records become equal once normalised, so they drop out together.
    records = answer_records(["Yes", "yes", "yes", "no", "no", "no", "no", "no", "no", "no"],
                             with_ids=False)
    annotations = [annotation(1, records)]
    for mode, reference in (("openflamingo", openflamingo_vqa), ("official", official_vqa)):
        _, expected = reference(annotations, {1: "yes"})
        assert question_accuracy("yes", records, mode) == expected[1]


def test_official_reference_reproduces_case_values():
    annotations = [annotation(index, answer_records(case["answers"]))
                   for index, case in enumerate(CASES)]
    predictions = {index: case["prediction"] for index, case in enumerate(CASES)}
    _, per_question = official_vqa(annotations, predictions)
    assert [per_question[index] for index in range(len(CASES))] == [
        case["official_head"] for case in CASES
    ]


def test_duplicate_ids_use_dict_equality():
    # Two records share answer_id 1, so they are not all distinct and the slow path runs.
    records = answer_records(["cat"] * 4 + ["dog"] * 6)
    records[1] = dict(records[0])
    annotations = [annotation(7, records)]
    _, expected = openflamingo_vqa(annotations, {7: "cat"})
    assert question_accuracy("cat", records) == expected[7]


def test_unhashable_record_values():
    records = answer_records(["cat"] * 4 + ["dog"] * 6, with_ids=False)
    for record in records:
        record["raters"] = ["a", "b"]
    annotations = [annotation(3, records)]
    _, expected = openflamingo_vqa(annotations, {3: "cat"})
    assert question_accuracy("cat", records) == expected[3]


NORMALISATION_INPUTS = [
    "Black.", "the dog", "A", "1,000", "10:30.", "t-shirt", "dont know", "Im here", "i'm",
    "  two  dogs\n", "a.b.c", "3.5", "e.g. this", "(red)", "red , blue", "a/b", "50%", "it's",
    "x" + "." * 40, "one, two", "Yes!", "don't", "\tten\t", "ten.", "U.S.A.", "9.", "",
    "o'clock", "oclock", "5,000 pounds", "yall'll", "Y'all", "hello-world - yes", "#1", "`quote`",
    "somebody'd", "non-stop, 24/7", "mr. smith", "I'm", "None", "zero", "The The", "an apple",
]


@pytest.mark.parametrize("text", NORMALISATION_INPUTS)
def test_normalisation_matches_openflamingo(text):
    reference = VQAEval(None, None)
    cleaned = text.replace("\n", " ").replace("\t", " ").strip()
    expected = reference.processDigitArticle(reference.processPunctuation(cleaned))
    assert clean_whitespace(text) == cleaned
    assert normalize_answer(cleaned) == expected


def test_period_removal_stops_after_32():
    text = "a" + ". " * 40
    assert normalize_answer(text).count(".") == 8


def test_tables_equal_openflamingo():
    reference = VQAEval(None, None)
    assert CONTRACTIONS == reference.contractions
    assert NUMBER_WORDS == reference.manualMap
    assert list(PUNCTUATION) == reference.punct


def test_unknown_mode_raises():
    with pytest.raises(InputError, match="normalization 'strict'"):
        question_accuracy("yes", answer_records(["yes"] * 10), mode="strict")


def test_prediction_without_answers_raises():
    with pytest.raises(InputError, match="question '2' has a prediction but no answers"):
        vqa_accuracy({"2": "yes"}, {"1": answer_records(["yes"] * 10)})


def test_non_string_prediction_raises():
    with pytest.raises(InputError, match="prediction must be a string"):
        vqa_accuracy({"1": None}, {"1": answer_records(["yes"] * 10)})


def test_record_without_answer_raises():
    with pytest.raises(InputError, match="has no 'answer' string"):
        question_accuracy("yes", [{"answer_id": 1}])


def test_no_predictions_raises():
    with pytest.raises(InputError, match="no predictions"):
        vqa_accuracy({}, {})
