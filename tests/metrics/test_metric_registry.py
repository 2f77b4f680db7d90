"""Tests of the metric registry: metrics over prediction records, as a run scores them."""

from __future__ import annotations

import shutil

import pytest
from metric_references import METRIC_CASES, answer_records

from flamingo_eval.errors import InputError
from flamingo_eval.metrics import METRICS, MetricResult

VQA_CASES = METRIC_CASES["vqa_accuracy"]["cases"]
CIDER = METRIC_CASES["cider"]
ROC_CASE = METRIC_CASES["roc_auc"]
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="java not installed")


def vqa_records(with_target: bool = True) -> list[dict]:
    return [
        {"sample_id": str(index), "prediction": case["prediction"],
         "target": answer_records(case["answers"]) if with_target else None}
        for index, case in enumerate(VQA_CASES)
    ]


def caption_records() -> list[dict]:
    return [
        {"sample_id": image_id, "prediction": text, "target": CIDER["references"][image_id]}
        for image_id, text in CIDER["candidates"].items()
    ]


def ranking_records() -> list[dict]:
    records = []
    for index, (label, p_yes) in enumerate(zip(ROC_CASE["labels"], ROC_CASE["p_yes"])):
        predicted = int(p_yes > 0.5)
        records.append({"sample_id": f"m{index}", "prediction": predicted,
                        "top_k": [predicted, 1 - predicted], "positive_score": p_yes,
                        "target": label})
    return records


def test_registry_names():
    assert set(METRICS) == {"vqa_accuracy", "cider", "bleu4", "meteor", "rouge_l", "spice",
                            "top1", "top5", "roc_auc"}


@pytest.mark.parametrize("mode", ["openflamingo", "official"])
def test_vqa_accuracy_records(mode):
    key = "openflamingo" if mode == "openflamingo" else "official_head"
    result = METRICS["vqa_accuracy"](vqa_records(), {"name": "vqa_accuracy", "normalization": mode})
    expected = [case[key] for case in VQA_CASES]
    assert isinstance(result, MetricResult)
    assert result.per_sample == {str(index): value for index, value in enumerate(expected)}
    assert result.value == round(sum(expected) / len(expected), 2)
    assert result.extra["normalization"] == mode


def test_vqa_default_mode_is_openflamingo():
    result = METRICS["vqa_accuracy"](vqa_records(), {})
    assert result.extra["normalization"] == "openflamingo"


@needs_java
def test_cider_records():
    result = METRICS["cider"](caption_records(), {})
    assert result.value == pytest.approx(100 * CIDER["expected"]["corpus_all_three"])
    assert list(result.per_sample) == ["1", "2", "3"]
    assert list(result.per_sample.values()) == pytest.approx(
        [100 * value for value in CIDER["expected"]["per_image_all_three"]], rel=1e-7)


def test_top1_records():
    records = ranking_records()
    result = METRICS["top1"](records, {})
    assert result.per_sample == {"m0": 100.0, "m1": 100.0, "m2": 0.0, "m3": 0.0}
    assert result.value == 50.0


def test_top1_without_top_k_uses_prediction():
    records = [{"sample_id": "a", "prediction": 3, "target": 3},
               {"sample_id": "b", "prediction": 1, "target": 2}]
    assert METRICS["top1"](records, {}).per_sample == {"a": 100.0, "b": 0.0}


def test_top5_needs_five_ranked_classes():
    with pytest.raises(InputError, match="fewer than 5"):
        METRICS["top5"](ranking_records(), {})


def test_roc_auc_records():
    result = METRICS["roc_auc"](ranking_records(), {})
    assert result.value == pytest.approx(100 * ROC_CASE["expected"])
    assert result.per_sample is None


def test_roc_auc_one_class_is_none():
    records = [dict(record, target=1) for record in ranking_records()]
    result = METRICS["roc_auc"](records, {})
    assert result.value is None
    assert "one class" in result.extra["reason"]


def test_roc_auc_missing_score_raises():
    records = ranking_records()
    del records[1]["positive_score"]
    with pytest.raises(InputError, match="sample 'm1': 'positive_score' must be a number"):
        METRICS["roc_auc"](records, {})


@pytest.mark.parametrize("name", sorted(METRICS))
def test_unannotated_split_gives_none(name):
    records = [{"sample_id": "1", "prediction": "a", "top_k": [0], "positive_score": 0.5,
                "target": None}]
    result = METRICS[name](records, {})
    assert result.value is None
    assert result.per_sample is None


def test_mixed_targets_raise():
    records = vqa_records()
    records[3]["target"] = None
    with pytest.raises(InputError, match="sample '3' has no target"):
        METRICS["vqa_accuracy"](records, {})


def test_duplicate_sample_ids_raise():
    # Padding repeats from a distributed sampler must be removed before scoring.
    records = vqa_records()
    records.append(dict(records[0]))
    with pytest.raises(InputError, match="sample '0' occurs twice"):
        METRICS["vqa_accuracy"](records, {})


def test_unknown_option_raises():
    with pytest.raises(InputError, match="unknown option 'normalisation'"):
        METRICS["vqa_accuracy"](vqa_records(), {"normalisation": "official"})
    with pytest.raises(InputError, match="unknown option 'k'"):
        METRICS["top1"](ranking_records(), {"k": 1})


def test_no_records_raise():
    with pytest.raises(InputError, match="no prediction records"):
        METRICS["cider"]([], {})
