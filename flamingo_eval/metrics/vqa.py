"""VQA accuracy: for each of the human answers, min(1, matching other answers / 3), averaged.

Two normalisation modes reproduce the two reference implementations:
- "openflamingo" (default): open_flamingo 2.0.1 `eval/vqa_metric.py` always normalises both the
  prediction and the human answers.
- "official": GT-Vision-Lab's `vqaEval.py` at HEAD normalises only when the human answers are
  not unanimous; otherwise it compares the stripped raw strings, so "Black." scores 0 against ten
  "black".

Both references form "the other answers" by dict equality on the answer records after
normalisation, so records without an `answer_id` (VizWiz files) that are equal to the held-out
one drop out together with it. This module does the same.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from flamingo_eval.errors import InputError
from flamingo_eval.metrics.vqa_normalization import clean_whitespace, normalize_answer

NORMALIZATION_MODES = ("openflamingo", "official")
# Both references print per-question and overall values x100 rounded to 2 places.
_DECIMALS = 2
_MISSING = object()


def question_accuracy(
    prediction: str, answers: list[dict[str, Any]], mode: str = "openflamingo"
) -> float:
    """Return one question's VQA accuracy x100, rounded to 2 places.

    `answers` are the answer records as the annotation file has them (dicts with "answer" and,
    in most files, "answer_id").
    """
    _check_mode(mode)
    return round(100 * _question_fraction(prediction, answers, mode, "prediction"), _DECIMALS)


def vqa_accuracy(
    predictions: dict[str, str],
    answers_by_id: dict[str, list[dict[str, Any]]],
    mode: str = "openflamingo",
) -> tuple[float, dict[str, float]]:
    """Score every prediction against its question's answers.

    Returns the overall accuracy x100 rounded to 2 places, computed from unrounded per-question
    values as the references do, and each question's accuracy x100 rounded to 2 places.
    Only the questions in `predictions` are scored.
    """
    _check_mode(mode)
    if not predictions:
        raise InputError("VQA accuracy: no predictions to score")
    fractions = []
    per_question = {}
    for question_id, prediction in predictions.items():
        answers = answers_by_id.get(question_id)
        if answers is None:
            raise InputError(
                f"VQA accuracy: question {question_id!r} has a prediction but no answers; "
                "check that predictions and annotations come from the same split"
            )
        fraction = _question_fraction(prediction, answers, mode, question_id)
        fractions.append(fraction)
        per_question[question_id] = round(100 * fraction, _DECIMALS)
    # NOTE: math.fsum makes the total independent of order. The references add in file order,
    # which can differ in the last bit and so, rarely, in the second decimal of the result.
    overall = round(100 * math.fsum(fractions) / len(fractions), _DECIMALS)
    return overall, per_question


def _question_fraction(prediction: Any, answers: Any, mode: str, question_id: str) -> float:
    """Return the accuracy of one question as a fraction in [0, 1]."""
    if not isinstance(prediction, str):
        raise InputError(
            f"VQA accuracy: question {question_id!r}: prediction must be a string, "
            f"not {type(prediction).__name__}"
        )
    raw_answers = _answer_strings(answers, question_id)
    cleaned = [clean_whitespace(answer) for answer in raw_answers]
    prediction = clean_whitespace(prediction)
    if mode == "openflamingo" or len(set(cleaned)) > 1:
        cleaned = [normalize_answer(answer) for answer in cleaned]
        prediction = normalize_answer(prediction)

    matches_per_answer = [answer == prediction for answer in cleaned]
    total_matches = sum(matches_per_answer)
    if _ids_are_distinct(answers):
        # Every record differs from every other, so holding one out removes only itself.
        removed = matches_per_answer
    else:
        removed = _matches_removed_with_each(answers, cleaned, matches_per_answer)
    per_answer = [min(1.0, (total_matches - held_out) / 3) for held_out in removed]
    return sum(per_answer) / len(per_answer)


def _answer_strings(answers: Any, question_id: str) -> list[str]:
    if not isinstance(answers, list) or not answers:
        raise InputError(
            f"VQA accuracy: question {question_id!r}: answers must be a non-empty list of "
            "answer records; check the annotation file"
        )
    strings = []
    for record in answers:
        answer = record.get("answer") if isinstance(record, dict) else None
        if not isinstance(answer, str):
            raise InputError(
                f"VQA accuracy: question {question_id!r}: answer record {record!r} has no "
                "'answer' string; check the annotation file"
            )
        strings.append(answer)
    return strings


def _ids_are_distinct(answers: list[dict[str, Any]]) -> bool:
    ids = [record.get("answer_id", _MISSING) for record in answers]
    if _MISSING in ids:
        return False
    try:
        return len(set(ids)) == len(ids)
    except TypeError:
        return False


def _matches_removed_with_each(
    answers: list[dict[str, Any]], cleaned: list[str], matches_per_answer: list[bool]
) -> list[int]:
    """Count, for each record, the matching records that drop out when it is held out.

    A record drops out with the held-out one when the two are equal as dicts after the answer
    is replaced by its processed form, as in the references.
    """
    processed = [{**record, "answer": answer} for record, answer in zip(answers, cleaned)]
    keys = [_record_key(record) for record in processed]
    if any(key is None for key in keys):
        removed = []
        for held_out in processed:
            pairs = zip(processed, matches_per_answer)
            removed.append(sum(matches for other, matches in pairs if other == held_out))
        return removed
    matches_per_key: Counter = Counter()
    for key, matches in zip(keys, matches_per_answer):
        matches_per_key[key] += matches
    return [matches_per_key[key] for key in keys]


def _record_key(record: dict[str, Any]) -> frozenset | None:
    """Return a hashable form of `record` (equal for equal dicts), or None if it cannot hash."""
    try:
        return frozenset(record.items())
    except TypeError:
        return None


def _check_mode(mode: str) -> None:
    if mode not in NORMALIZATION_MODES:
        raise InputError(
            f"VQA accuracy: unknown normalization {mode!r}; expected one of {NORMALIZATION_MODES}"
        )
