"""Paired tests on per-sample scores: a paired bootstrap interval and the exact McNemar test."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Resamples drawn per block, so memory stays near block x items floats for any resample count.
_BOOTSTRAP_BLOCK = 256


@dataclass(frozen=True)
class BootstrapInterval:
    """A percentile bootstrap interval of the mean paired difference (second minus first)."""

    mean_difference: float
    low: float
    high: float
    confidence: float
    num_resamples: int
    seed: int


def paired_bootstrap(
    differences_by_trial: list[np.ndarray],
    num_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapInterval:
    """Bootstrap the mean over trials of each trial's mean per-sample difference.

    Items are resampled with replacement within each trial (a stratified bootstrap), because
    a run's score is the mean over trials of per-trial scores. The interval is the
    (1 - confidence) / 2 and (1 + confidence) / 2 percentiles of the resampled statistic.
    Draw order, which a seed reproduces: for each block of up to 256 resamples, one
    `Generator.integers(0, n, size=(block, n))` call per trial, trials in the given order,
    from `numpy.random.default_rng(seed)`.
    """
    trials = [np.asarray(values, dtype=float) for values in differences_by_trial if len(values)]
    if not trials:
        raise ValueError("paired_bootstrap needs at least one trial with paired samples")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be at least 1, got {num_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")

    rng = np.random.default_rng(seed)
    statistics = np.empty(num_resamples, dtype=float)
    for start in range(0, num_resamples, _BOOTSTRAP_BLOCK):
        block = min(_BOOTSTRAP_BLOCK, num_resamples - start)
        trial_means = np.zeros(block, dtype=float)
        for values in trials:
            indices = rng.integers(0, len(values), size=(block, len(values)))
            trial_means += values[indices].mean(axis=1)
        statistics[start : start + block] = trial_means / len(trials)

    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(statistics, [tail, 1.0 - tail])
    mean_difference = float(np.mean([values.mean() for values in trials]))
    return BootstrapInterval(mean_difference, float(low), float(high), confidence, num_resamples, seed)


def mcnemar_exact(first_only: int, second_only: int) -> float:
    """Return the two-sided exact McNemar p-value from the two discordant counts.

    `first_only` counts pairs the first system gets right and the second wrong; `second_only`
    the reverse. Under the null hypothesis each discordant pair goes either way with probability
    1/2, so p = min(1, 2 * P(X <= min(b, c))) for X ~ Binomial(b + c, 1/2); with no discordant
    pairs p = 1.
    """
    if first_only < 0 or second_only < 0:
        raise ValueError(f"discordant counts must be non-negative, got {first_only}, {second_only}")
    total = first_only + second_only
    if total == 0:
        return 1.0
    smaller = min(first_only, second_only)
    # Integer arithmetic, then one correctly rounded division: exact for any count.
    tail = sum(math.comb(total, count) for count in range(smaller + 1))
    return min(1.0, 2 * tail / 2**total)


def binary_scale(values: np.ndarray) -> float | None:
    """Return the score that means "correct" when every value is 0 or it (1 or 100), else None."""
    distinct = set(np.unique(values).tolist())
    for correct in (1.0, 100.0):
        if distinct <= {0.0, correct}:
            return correct
    return None


def discordant_counts(first: np.ndarray, second: np.ndarray, correct: float) -> tuple[int, int]:
    """Count pairs right only in `first` and right only in `second`."""
    first_right = first == correct
    second_right = second == correct
    return int(np.sum(first_right & ~second_right)), int(np.sum(~first_right & second_right))
