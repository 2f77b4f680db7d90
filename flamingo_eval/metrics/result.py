"""The value every registered metric returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MetricResult:
    """A metric's value over all scored records.

    `value` is x100 (a percentage, or CIDEr x100), or None when the split has no annotations or
    the metric is undefined on it. `per_sample` maps sample ids to the values that `compare`
    pairs across runs, or is None for metrics without one (ROC-AUC). `extra` contains details such
    as the number of scored samples or the reason a value is None.
    """

    value: float | None
    per_sample: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
