"""Metrics over prediction records, the form in which `METRICS` registers them.

Each function takes the prediction records of one task, shot count and trial (dicts with
"sample_id", "prediction", "target" and, for ranking tasks, "top_k" and "positive_score") and
the metric's options from the task file. Records must be gathered from all ranks and
de-duplicated first: a repeated sample id raises InputError instead of being counted twice.
"""

from __future__ import annotations

from typing import Any, Callable

from flamingo_eval.errors import InputError
from flamingo_eval.metrics.captioning import score_captions
from flamingo_eval.metrics.classification import roc_auc, top_k_accuracy
from flamingo_eval.metrics.result import MetricResult
from flamingo_eval.metrics.vqa import vqa_accuracy

RecordMetric = Callable[[list[dict[str, Any]], dict[str, Any]], MetricResult]
_UNANNOTATED = "the split has no annotations (target is None)"


def score_vqa_accuracy(records: list[dict[str, Any]], options: dict[str, Any]) -> MetricResult:
    """Compute VQA accuracy. Option "normalization" is "openflamingo" (default) or "official"."""
    _check_options("vqa_accuracy", options, {"normalization"})
    mode = options.get("normalization", "openflamingo")
    if not _is_annotated("vqa_accuracy", records):
        return MetricResult(None, None, {"reason": _UNANNOTATED, "normalization": mode})
    predictions = {record["sample_id"]: record.get("prediction") for record in records}
    answers = {record["sample_id"]: record["target"] for record in records}
    overall, per_question = vqa_accuracy(predictions, answers, mode)
    return MetricResult(overall, per_question, {"normalization": mode, "samples": len(records)})


def caption_metric(name: str) -> RecordMetric:
    """Return the record metric for one captioning scorer (see CAPTION_METRICS)."""

    def score(records: list[dict[str, Any]], options: dict[str, Any]) -> MetricResult:
        _check_options(name, options, set())
        if not _is_annotated(name, records):
            return MetricResult(None, None, {"reason": _UNANNOTATED})
        predictions = {record["sample_id"]: record.get("prediction") for record in records}
        references = {record["sample_id"]: record["target"] for record in records}
        result = score_captions(predictions, references, [name])[name]
        return MetricResult(result.corpus, result.per_image, {"samples": len(records)})

    score.__name__ = f"score_{name}"
    score.__doc__ = f"Compute {name} x100 once over all records."
    return score


def top_k_metric(k: int) -> RecordMetric:
    """Return the record metric for top-k accuracy by class index."""

    def score(records: list[dict[str, Any]], options: dict[str, Any]) -> MetricResult:
        name = f"top{k}"
        _check_options(name, options, set())
        if not _is_annotated(name, records):
            return MetricResult(None, None, {"reason": _UNANNOTATED})
        ranked = {record["sample_id"]: _ranked_classes(record, name) for record in records}
        targets = {record["sample_id"]: record["target"] for record in records}
        accuracy, hits = top_k_accuracy(ranked, targets, k)
        return MetricResult(accuracy, hits, {"samples": len(records)})

    score.__name__ = f"score_top{k}"
    score.__doc__ = f"Compute top-{k} accuracy x100 by class index (per sample: 100 or 0)."
    return score


def score_roc_auc(records: list[dict[str, Any]], options: dict[str, Any]) -> MetricResult:
    """Compute ROC-AUC x100 of each record's "positive_score" against its 0/1 target."""
    _check_options("roc_auc", options, set())
    if not _is_annotated("roc_auc", records):
        return MetricResult(None, None, {"reason": _UNANNOTATED})
    labels = [record["target"] for record in records]
    scores = []
    for record in records:
        score = record.get("positive_score")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise InputError(
                f"roc_auc: sample {record['sample_id']!r}: 'positive_score' must be a number, "
                f"not {score!r}; ROC-AUC needs the probability of the positive class"
            )
        scores.append(float(score))
    value = roc_auc(labels, scores)
    if value is None:
        reason = "ROC-AUC is undefined when all targets belong to one class"
        return MetricResult(None, None, {"reason": reason, "samples": len(records)})
    return MetricResult(value, None, {"samples": len(records)})


def _ranked_classes(record: dict[str, Any], name: str) -> list[int]:
    ranked = record.get("top_k")
    if ranked is None and isinstance(record.get("prediction"), int):
        ranked = [record["prediction"]]
    if not isinstance(ranked, list):
        raise InputError(
            f"{name}: sample {record['sample_id']!r}: 'top_k' must be a list of class indices"
        )
    return ranked


def _is_annotated(name: str, records: list[dict[str, Any]]) -> bool:
    """Check the records and return False when none has a target (an unannotated split)."""
    if not records:
        raise InputError(f"{name}: no prediction records to score")
    seen = set()
    for record in records:
        sample_id = record.get("sample_id")
        if not isinstance(sample_id, str):
            raise InputError(f"{name}: record {record!r} is missing a string 'sample_id'")
        if sample_id in seen:
            raise InputError(
                f"{name}: sample {sample_id!r} occurs twice; de-duplicate predictions gathered "
                "from several ranks before scoring"
            )
        seen.add(sample_id)
    missing = [record["sample_id"] for record in records if record.get("target") is None]
    if len(missing) == len(records):
        return False
    if missing:
        raise InputError(
            f"{name}: sample {missing[0]!r} has no target but {len(records) - len(missing)} "
            "other samples have one; score an annotated split or an unannotated one, not a mix"
        )
    return True


def _check_options(name: str, options: dict[str, Any], allowed: set[str]) -> None:
    # "name" is the metric entry's own key in a task file.
    unknown = sorted(set(options) - allowed - {"name"})
    if unknown:
        expected = ", ".join(sorted(allowed)) or "none"
        raise InputError(f"metric {name}: unknown option {unknown[0]!r}; options: {expected}")
