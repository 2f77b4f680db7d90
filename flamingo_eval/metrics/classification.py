"""Classification metrics: top-k accuracy by class index and ROC-AUC, as x100 percentages.

Accuracy compares class indices, never class names. OpenFlamingo's ImageNet class names contain
duplicates ("missile" and "sunglasses" each name two classes), so a name match would count some
wrong predictions as right.
"""

from __future__ import annotations

from typing import Sequence

from flamingo_eval.errors import InputError


def top_k_hits(
    ranked_classes: dict[str, Sequence[int]], targets: dict[str, int], k: int
) -> dict[str, float]:
    """Return 100.0 per sample whose target is among its first `k` ranked classes, else 0.0.

    `ranked_classes` maps a sample id to class indices, best first.
    """
    if k < 1:
        raise InputError(f"top-k accuracy: k must be at least 1, not {k}")
    hits = {}
    for sample_id, ranked in ranked_classes.items():
        target = _class_index(targets.get(sample_id), sample_id)
        if len(ranked) < k:
            raise InputError(
                f"top-{k} accuracy: sample {sample_id!r} has {len(ranked)} ranked classes, "
                f"fewer than {k}; store at least {k} in 'top_k' or drop top{k} from the task"
            )
        hits[sample_id] = 100.0 if target in ranked[:k] else 0.0
    return hits


def top_k_accuracy(
    ranked_classes: dict[str, Sequence[int]], targets: dict[str, int], k: int
) -> tuple[float, dict[str, float]]:
    """Return top-k accuracy x100 over the samples in `ranked_classes`, and each sample's 0/100."""
    if not ranked_classes:
        raise InputError(f"top-{k} accuracy: no predictions to score")
    hits = top_k_hits(ranked_classes, targets, k)
    return sum(hits.values()) / len(hits), hits


def roc_auc(labels: Sequence[int], positive_scores: Sequence[float]) -> float | None:
    """Return ROC-AUC x100 of the positive-class scores, or None when only one class occurs.

    Pass the probability of the positive class ("yes" for HatefulMemes) for every sample, not
    the confidence of the predicted label: that is a different ranking.
    """
    from sklearn.metrics import roc_auc_score

    if len(labels) != len(positive_scores):
        raise InputError(f"ROC-AUC: {len(labels)} labels but {len(positive_scores)} scores")
    if any(label not in (0, 1) for label in labels):
        raise InputError("ROC-AUC: labels must be 0 or 1")
    if len(set(labels)) < 2:
        return None
    return 100.0 * float(roc_auc_score(list(labels), list(positive_scores)))


def _class_index(target: object, sample_id: str) -> int:
    if isinstance(target, bool) or not isinstance(target, int):
        raise InputError(
            f"top-k accuracy: sample {sample_id!r}: target must be a class index (int), "
            f"not {target!r}"
        )
    return target
