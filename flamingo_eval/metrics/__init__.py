"""Metrics by the names task files use.

Each entry takes `(records, options)`: the de-duplicated prediction records of one task, shot
count and trial, and the metric's entry from the task file. It returns a `MetricResult`.
"""

from __future__ import annotations

from flamingo_eval.metrics.record_metrics import (
    RecordMetric,
    caption_metric,
    score_roc_auc,
    score_vqa_accuracy,
    top_k_metric,
)
from flamingo_eval.metrics.result import MetricResult

METRICS: dict[str, RecordMetric] = {
    "vqa_accuracy": score_vqa_accuracy,
    "cider": caption_metric("cider"),
    "bleu4": caption_metric("bleu4"),
    "meteor": caption_metric("meteor"),
    "rouge_l": caption_metric("rouge_l"),
    # SPICE downloads Stanford CoreNLP on first use, so it runs only when a task lists it.
    "spice": caption_metric("spice"),
    "top1": top_k_metric(1),
    "top5": top_k_metric(5),
    "roc_auc": score_roc_auc,
}

__all__ = ["METRICS", "MetricResult", "RecordMetric"]
