"""Tests of `flamingo-eval compare`: deltas, paired bootstrap, exact McNemar, CSV and flags."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from flamingo_eval import compare
from flamingo_eval.compare import CompareOptions, compare_runs, format_markdown
from flamingo_eval.errors import InputError
from flamingo_eval.run_reader import load_runs
from flamingo_eval.statistics import mcnemar_exact, paired_bootstrap
from run_folder_builder import write_run

VQA_VALUES = [0, 30, 60, 90, 100, 0, 30, 60, 90, 100]  # mean 560 / 10 = 56


def vqa_scores(changes: dict[tuple[int, int], dict[str, float]] | None = None) -> dict:
    """OK-VQA scores for shots 0 and 4, seeds 1 and 2, ten questions, with per-item changes."""
    scores = {
        (0, 1): {f"q{i}": float(v) for i, v in enumerate(VQA_VALUES)},
        (0, 2): {f"q{i}": float(v) for i, v in enumerate(VQA_VALUES)},
        (4, 1): {f"q{i}": 60.0 for i in range(10)},
        (4, 2): {f"q{i}": 60.0 for i in range(10)},
    }
    for trial, items in (changes or {}).items():
        scores[trial].update(items)
    return scores


def imagenet_scores(correct: set[int]) -> dict:
    return {(0, 1): {f"i{i}": 100.0 if i in correct else 0.0 for i in range(20)}}


@pytest.fixture
def two_runs(tmp_path) -> tuple[Path, Path]:
    """Run A and run B that differ on known items.

    OK-VQA: B gets q0 right at 0 shots, seed 1 (0 -> 100) and q1 wrong at 4 shots, seed 1
    (60 -> 0). ImageNet top-1: A is right on i0-i9, B on i0-i7 and i10-i15, so 2 items are right
    only in A and 6 only in B.
    """
    metrics = {"imagenet": "top1"}
    run_a = write_run(
        tmp_path / "run-a",
        {"okvqa": vqa_scores(), "imagenet": imagenet_scores(set(range(10)))},
        metrics=metrics, model="model-a",
    )
    run_b = write_run(
        tmp_path / "run-b",
        {
            "okvqa": vqa_scores({(0, 1): {"q0": 100.0}, (4, 1): {"q1": 0.0}}),
            "imagenet": imagenet_scores(set(range(8)) | set(range(10, 16))),
        },
        metrics=metrics, model="model-b",
    )
    return run_a, run_b


def row_of(table: pd.DataFrame, task: str, shots: int, run: str) -> pd.Series:
    selected = table[(table["task"] == task) & (table["shots"] == shots) & (table["run"] == run)]
    assert len(selected) == 1
    return selected.iloc[0]


def hand_mcnemar(b: int, c: int) -> float:
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n)


def test_compare_means_and_deltas(two_runs):
    table = compare_runs(load_runs(list(two_runs)))

    first_zero = row_of(table, "okvqa", 0, "run-a")
    second_zero = row_of(table, "okvqa", 0, "run-b")
    second_four = row_of(table, "okvqa", 4, "run-b")
    # B at 0 shots: seed 1 mean (560 + 100) / 10 = 66, seed 2 mean 56 -> 61 +- 5 (ddof 0).
    assert first_zero["mean"] == pytest.approx(56.0)
    assert second_zero["mean"] == pytest.approx(61.0)
    assert second_zero["std"] == pytest.approx(5.0)
    assert second_zero["delta"] == pytest.approx(5.0)
    # B at 4 shots: seed 1 mean (9 * 60) / 10 = 54, seed 2 mean 60 -> 57, delta -3.
    assert second_four["delta"] == pytest.approx(-3.0)
    assert row_of(table, "imagenet", 0, "run-b")["delta"] == pytest.approx(20.0)
    assert pd.isna(first_zero["delta"])


def test_paired_difference_matches_delta(two_runs):
    table = compare_runs(load_runs(list(two_runs)))
    row = row_of(table, "okvqa", 0, "run-b")

    assert row["paired_samples"] == 20
    assert row["mean_difference"] == pytest.approx(5.0)
    assert row["ci_low"] <= 5.0 <= row["ci_high"]


def test_mcnemar_p_value_against_hand_computation(two_runs):
    table = compare_runs(load_runs(list(two_runs)))
    row = row_of(table, "imagenet", 0, "run-b")

    assert row["mcnemar_first_only"] == 2
    assert row["mcnemar_second_only"] == 6
    # n = 8 discordant pairs, min(b, c) = 2: 2 * (C(8,0) + C(8,1) + C(8,2)) / 2^8 = 74 / 256.
    assert row["mcnemar_p"] == pytest.approx(74 / 256, abs=1e-15)
    assert row["mcnemar_p"] == pytest.approx(binomtest(2, 8, 0.5).pvalue, abs=1e-12)


@pytest.mark.parametrize("b,c", [(0, 0), (0, 1), (1, 0), (3, 3), (0, 10), (7, 25), (120, 80), (400, 450)])
def test_mcnemar_exact_cases(b, c):
    assert mcnemar_exact(b, c) == pytest.approx(hand_mcnemar(b, c), rel=1e-12)
    if b + c:
        assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_mcnemar_not_applied_to_vqa_scores(two_runs):
    options = CompareOptions()
    table = compare_runs(load_runs(list(two_runs)), options)
    markdown = format_markdown(table, options)

    assert pd.isna(row_of(table, "okvqa", 0, "run-b")["mcnemar_p"])
    okvqa_section = markdown[markdown.index("## okvqa") : markdown.index("## imagenet")]
    assert "| 0 | run-b | 20 | +5.00 |" in okvqa_section
    assert "n/a | n/a |" in okvqa_section


def test_bootstrap_same_seed_same_interval():
    rng = np.random.default_rng(5)
    trials = [rng.normal(1.0, 3.0, size=50), rng.normal(1.0, 3.0, size=40)]

    first = paired_bootstrap(trials, num_resamples=500, seed=11)
    again = paired_bootstrap(trials, num_resamples=500, seed=11)
    other = paired_bootstrap(trials, num_resamples=500, seed=12)

    assert (first.low, first.high) == (again.low, again.high)
    assert (first.low, first.high) != (other.low, other.high)


def test_bootstrap_follows_documented_draw_order():
    trials = [np.array([0.0, 100.0, 30.0, -60.0]), np.array([10.0, 0.0, -30.0])]
    result = paired_bootstrap(trials, num_resamples=300, seed=3, confidence=0.9)

    # Reference: blocks of up to 256 resamples, one integers() call per trial and block.
    rng = np.random.default_rng(3)
    statistics = []
    for block in (256, 44):
        means = np.zeros(block)
        for values in trials:
            indices = rng.integers(0, len(values), size=(block, len(values)))
            means += values[indices].mean(axis=1)
        statistics.extend(means / len(trials))
    assert result.low == pytest.approx(np.quantile(statistics, 0.05))
    assert result.high == pytest.approx(np.quantile(statistics, 0.95))
    # Trial means 70 / 4 = 17.5 and -20 / 3.
    assert result.mean_difference == pytest.approx((17.5 - 20.0 / 3) / 2)


def test_bootstrap_interval_near_normal_theory():
    rng = np.random.default_rng(0)
    differences = rng.normal(2.0, 10.0, size=4000)
    result = paired_bootstrap([differences], num_resamples=2000, seed=1)

    standard_error = differences.std(ddof=1) / math.sqrt(len(differences))
    half_width = (result.high - result.low) / 2
    assert half_width == pytest.approx(1.96 * standard_error, rel=0.1)
    assert (result.low + result.high) / 2 == pytest.approx(differences.mean(), abs=0.2 * standard_error * 1.96)


def test_compare_csv_contents(two_runs, tmp_path, capsys):
    output = tmp_path / "comparison.csv"
    code = compare.main([str(two_runs[0]), str(two_runs[1]), "--output", str(output),
                         "--bootstrap-samples", "200", "--seed", "4"])
    assert code == 0

    table = pd.read_csv(output)
    assert list(table.columns) == compare.COMPARISON_COLUMNS
    # okvqa 0 and 4 shots, imagenet 0 shots, one row per run each.
    assert len(table) == 6
    row = row_of(table, "imagenet", 0, "run-b")
    assert row["mean"] == pytest.approx(70.0)
    assert row["delta"] == pytest.approx(20.0)
    assert row["mcnemar_p"] == pytest.approx(74 / 256)
    assert row["bootstrap_samples"] == 200
    assert row["bootstrap_seed"] == 4
    assert row_of(table, "okvqa", 4, "run-a")["protocol_differences"] == "reference"
    assert pd.isna(row["protocol_differences"])

    printed = capsys.readouterr().out
    assert "| shots | run-a | run-b | Δ run-b |" in printed
    assert "| 0 | 56.00 ± 0.00 | 61.00 ± 5.00 | +5.00 |" in printed
    assert "paired percentile bootstrap" in printed
    assert "200 resamples, seed 4" in printed


def test_compare_csv_reproducible_with_seed(two_runs, tmp_path, capsys):
    paths = [tmp_path / "one.csv", tmp_path / "two.csv"]
    for path in paths:
        compare.main([str(two_runs[0]), str(two_runs[1]), "--output", str(path),
                      "--bootstrap-samples", "300", "--seed", "7"])
    capsys.readouterr()

    assert paths[0].read_text() == paths[1].read_text()
    assert not pd.read_csv(paths[0])["ci_low"].dropna().empty


def test_protocol_difference_flagged(two_runs, tmp_path, capsys):
    run_c = write_run(
        tmp_path / "run-c", {"okvqa": vqa_scores()}, num_samples=10, seeds=[1, 2, 3],
    )
    output = tmp_path / "flags.csv"
    compare.main([str(two_runs[0]), str(two_runs[1]), str(run_c), "--output", str(output),
                  "--bootstrap-samples", "50"])
    printed = capsys.readouterr().out

    table = pd.read_csv(output)
    assert row_of(table, "okvqa", 0, "run-c")["protocol_differences"] == "num_samples;seeds"
    assert "| protocol | reference | same | differs: num_samples, seeds |" in printed
    assert "not directly comparable" in printed
    # run-c has no imagenet task: its column shows no score there.
    assert "imagenet not in run-c" in row_of(table, "imagenet", 0, "run-c")["protocol_differences"]


def test_unmatched_samples_left_out_of_pairs(tmp_path):
    scores_a = {"okvqa": {(0, 1): {"q0": 100.0, "q1": 0.0, "q2": 30.0}}}
    scores_b = {"okvqa": {(0, 1): {"q1": 100.0, "q2": 30.0, "q3": 100.0}}}
    runs = load_runs([write_run(tmp_path / "a", scores_a), write_run(tmp_path / "b", scores_b)])

    row = row_of(compare_runs(runs), "okvqa", 0, "b")
    assert row["paired_samples"] == 2
    assert row["mean_difference"] == pytest.approx(50.0)


def test_labels_option_renames_columns(two_runs, capsys):
    compare.main([str(two_runs[0]), str(two_runs[1]), "--labels", "base,new", "--bootstrap-samples", "20"])
    assert "| shots | base | new | Δ new |" in capsys.readouterr().out


def test_compare_rejects_single_run(two_runs):
    with pytest.raises(InputError, match="at least two"):
        compare.main([str(two_runs[0])])


def test_compare_rejects_missing_folder(two_runs, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError, match="nowhere: run folder not found"):
        compare.main([str(two_runs[0]), str(missing)])


def test_compare_rejects_bad_bootstrap_count(two_runs):
    with pytest.raises(InputError, match="--bootstrap-samples 0"):
        compare.main([str(two_runs[0]), str(two_runs[1]), "--bootstrap-samples", "0"])


def test_compare_reports_bad_prediction_line(two_runs):
    predictions = two_runs[1] / "predictions.jsonl"
    predictions.write_text(predictions.read_text() + "{not json\n")
    with pytest.raises(InputError, match=r"predictions.jsonl:\d+: invalid JSON"):
        compare.main([str(two_runs[0]), str(two_runs[1])])
