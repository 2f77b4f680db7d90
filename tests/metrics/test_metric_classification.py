"""Tests of top-k accuracy by class index and of ROC-AUC."""

from __future__ import annotations

import random

import pytest
from metric_references import METRIC_CASES
from open_flamingo.eval.classification_utils import IMAGENET_CLASSNAMES
from sklearn.metrics import roc_auc_score

from flamingo_eval.errors import InputError
from flamingo_eval.metrics.classification import roc_auc, top_k_accuracy, top_k_hits

ROC_CASE = METRIC_CASES["roc_auc"]


def pairwise_auc(labels: list[int], scores: list[float]) -> float:
    """ROC-AUC by counting positive-negative pairs, ties counted as half, x100."""
    positives = [score for label, score in zip(labels, scores) if label == 1]
    negatives = [score for label, score in zip(labels, scores) if label == 0]
    wins = 0.0
    for positive in positives:
        for negative in negatives:
            if positive > negative:
                wins += 1.0
            elif positive == negative:
                wins += 0.5
    return 100 * wins / (len(positives) * len(negatives))


def test_roc_auc_case():
    value = roc_auc(ROC_CASE["labels"], ROC_CASE["p_yes"])
    assert value == pytest.approx(100 * ROC_CASE["expected"])


def test_roc_auc_on_predicted_label_confidence_differs():
    # The confidence of the predicted label, max(p, 1 - p), ranks samples differently.
    confidence = [max(p, 1 - p) for p in ROC_CASE["p_yes"]]
    assert roc_auc(ROC_CASE["labels"], confidence) == pytest.approx(50.0)


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_sklearn_and_pair_count(seed):
    rng = random.Random(seed)
    labels = [rng.randint(0, 1) for _ in range(200)]
    labels[:2] = [0, 1]
    # Rounded scores produce ties.
    scores = [round(rng.random(), 1) for _ in labels]
    value = roc_auc(labels, scores)
    assert value == pytest.approx(100 * roc_auc_score(labels, scores))
    assert value == pytest.approx(pairwise_auc(labels, scores))


def test_roc_auc_one_class_is_none():
    assert roc_auc([1, 1, 1], [0.2, 0.5, 0.9]) is None


def test_roc_auc_invalid_input_raises():
    with pytest.raises(InputError, match="labels must be 0 or 1"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(InputError, match="2 labels but 1 scores"):
        roc_auc([0, 1], [0.1])


def test_imagenet_duplicate_names_count_by_index():
    # ImageNet names two pairs of classes alike ("missile", "sunglasses").
    name = next(name for name in IMAGENET_CLASSNAMES if IMAGENET_CLASSNAMES.count(name) > 1)
    first = IMAGENET_CLASSNAMES.index(name)
    second = IMAGENET_CLASSNAMES.index(name, first + 1)
    # Same name, different class: predicting the other class is wrong.
    accuracy, hits = top_k_accuracy({"bird": [second, first]}, {"bird": first}, k=1)
    assert accuracy == 0.0
    assert hits == {"bird": 0.0}


def test_top_k_values():
    ranked = {
        "a": [3, 1, 2, 0, 4],
        "b": [0, 1, 2, 3, 4],
        "c": [4, 3, 2, 1, 0],
        "d": [1, 0, 2, 3, 4],
    }
    targets = {"a": 3, "b": 4, "c": 4, "d": 0}
    top1, hits1 = top_k_accuracy(ranked, targets, k=1)
    top2, hits2 = top_k_accuracy(ranked, targets, k=2)
    top5, _ = top_k_accuracy(ranked, targets, k=5)
    assert hits1 == {"a": 100.0, "b": 0.0, "c": 100.0, "d": 0.0}
    assert top1 == 50.0
    assert hits2 == {"a": 100.0, "b": 0.0, "c": 100.0, "d": 100.0}
    assert top2 == 75.0
    assert top5 == 100.0


def test_top_k_short_ranking_raises():
    with pytest.raises(InputError, match="sample 'a' has 2 ranked classes, fewer than 5"):
        top_k_hits({"a": [1, 2]}, {"a": 1}, k=5)


def test_top_k_invalid_target_raises():
    with pytest.raises(InputError, match="target must be a class index"):
        top_k_hits({"a": [1]}, {"a": "crane"}, k=1)
