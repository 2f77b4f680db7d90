"""`flamingo-eval compare`: score tables of several runs with paired tests against the first run.

Per-sample scores are paired by (task, shots, sampler, trial seed, sample id). Each later run
gets a paired bootstrap interval of its mean difference from the first run and, when every
per-sample score is 0 or correct (0/1 or 0/100), an exact McNemar test.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flamingo_eval.errors import InputError
from flamingo_eval.results import write_atomic
from flamingo_eval.run_reader import Run, differing_fields, load_runs
from flamingo_eval.statistics import binary_scale, discordant_counts, mcnemar_exact, paired_bootstrap

logger = logging.getLogger(__name__)

COMPARISON_COLUMNS = [
    "task", "sampler", "metric", "shots", "run", "run_path",
    "mean", "std", "num_trials", "num_samples", "delta",
    "paired_samples", "mean_difference", "ci_low", "ci_high", "confidence",
    "bootstrap_samples", "bootstrap_seed",
    "mcnemar_first_only", "mcnemar_second_only", "mcnemar_p",
    "protocol_differences",
]
REFERENCE = "reference"
GROUP_KEYS = ["task", "metric", "sampler"]


@dataclass(frozen=True)
class CompareOptions:
    """Settings of the paired tests."""

    bootstrap_samples: int = 1000
    seed: int = 0
    confidence: float = 0.95


def method_description(options: CompareOptions) -> str:
    """Describe the paired tests in one paragraph, for every printed or written comparison."""
    return (
        f"Paired tests against the first run, on per-sample scores matched by (task, shots, "
        f"sampler, trial seed, sample id). Interval: paired percentile bootstrap of the mean "
        f"difference (run minus first run), items resampled within each trial, "
        f"{options.bootstrap_samples} resamples, seed {options.seed}, "
        f"{options.confidence:.0%} confidence. McNemar: exact two-sided binomial test on the "
        f"discordant pairs (b = right only in the first run, c = right only in this run), "
        f"computed only when every per-sample score is 0 or the full score (0/1 or 0/100); "
        f"otherwise n/a. Metrics computed over the whole set rather than per sample (ROC-AUC) "
        f"have 0 pairs, so both tests are n/a for them."
    )


def protocol_differences(reference: Run, run: Run, task: str) -> str:
    """Return the protocol fields of `task` in which `run` differs from `reference`, ';'-joined."""
    if task not in reference.metadata["tasks"]:
        return f"task {task} not in {reference.label}"
    if task not in run.metadata["tasks"]:
        return f"task {task} not in {run.label}"
    fields = differing_fields(reference.protocol_identity(task), run.protocol_identity(task))
    return ";".join(fields)


class _ScoreCache:
    """Per-sample scores of each (run, task, metric), read once."""

    def __init__(self) -> None:
        self._scores: dict[tuple[int, str, str], dict] = {}

    def get(self, run: Run, task: str, metric: str) -> dict:
        key = (id(run), task, metric)
        if key not in self._scores:
            self._scores[key] = run.sample_scores(task, metric)
        return self._scores[key]


def paired_test(
    first: dict, second: dict, shots: int, sampler: str, options: CompareOptions
) -> dict[str, Any]:
    """Run the bootstrap and McNemar tests on the pairs present in both score maps at `shots`."""
    common = sorted(
        key for key in first.keys() & second.keys() if key[1] == shots and key[2] == sampler
    )
    result: dict[str, Any] = {"paired_samples": len(common)}
    if not common:
        return result

    by_seed: dict[int, list[float]] = {}
    for key in common:
        by_seed.setdefault(key[3], []).append(second[key] - first[key])
    interval = paired_bootstrap(
        [np.array(by_seed[seed]) for seed in sorted(by_seed)],
        num_resamples=options.bootstrap_samples,
        seed=options.seed,
        confidence=options.confidence,
    )
    result.update(
        mean_difference=interval.mean_difference,
        ci_low=interval.low,
        ci_high=interval.high,
    )

    first_scores = np.array([first[key] for key in common])
    second_scores = np.array([second[key] for key in common])
    correct = binary_scale(np.concatenate([first_scores, second_scores]))
    if correct is not None:
        # NOTE: pairs from different trials may share a sample id, so they are not independent
        # as the test assumes; with one trial they are.
        first_only, second_only = discordant_counts(first_scores, second_scores, correct)
        result.update(
            mcnemar_first_only=first_only,
            mcnemar_second_only=second_only,
            mcnemar_p=mcnemar_exact(first_only, second_only),
        )
    return result


def compare_runs(runs: list[Run], options: CompareOptions = CompareOptions()) -> pd.DataFrame:
    """Build the comparison table: one row per (task, sampler, metric, shots, run).

    `delta` is the run's mean minus the first run's mean, taken from the summaries. The paired
    columns come from per-sample scores, so they stay empty for the first run and for metrics
    without per-sample scores (ROC-AUC).
    """
    if not runs:
        raise InputError("compare needs at least one run folder")
    reference = runs[0]
    scores = _ScoreCache()
    rows_by_run = {
        run.label: {
            (row.task, row.sampler, row.metric, int(row.shots)): row
            for row in run.summary.itertuples(index=False)
        }
        for run in runs
    }
    # Groups of (task, sampler, metric) keep the order in which the runs list them, first run
    # first; rows within a group are sorted by shots.
    group_order: dict[tuple[str, str, str], int] = {}
    for run in runs:
        for key in rows_by_run[run.label]:
            group_order.setdefault(key[:3], len(group_order))
    all_keys = {key for run in runs for key in rows_by_run[run.label]}
    row_keys = sorted(all_keys, key=lambda key: (group_order[key[:3]], key[3]))

    rows = []
    for task, sampler, metric, shots in row_keys:
        reference_row = rows_by_run[reference.label].get((task, sampler, metric, shots))
        for run in runs:
            summary_row = rows_by_run[run.label].get((task, sampler, metric, shots))
            row: dict[str, Any] = {
                "task": task, "sampler": sampler, "metric": metric, "shots": shots,
                "run": run.label, "run_path": str(run.path),
            }
            if summary_row is not None:
                row.update(
                    mean=summary_row.mean, std=summary_row.std,
                    num_trials=summary_row.num_trials, num_samples=summary_row.num_samples,
                )
            if run is reference:
                row["protocol_differences"] = REFERENCE
                rows.append(row)
                continue
            row["protocol_differences"] = protocol_differences(reference, run, task)
            if summary_row is not None and reference_row is not None:
                row["delta"] = summary_row.mean - reference_row.mean
            row.update(
                paired_test(
                    scores.get(reference, task, metric),
                    scores.get(run, task, metric),
                    shots,
                    sampler,
                    options,
                )
            )
            if row.get("paired_samples"):
                row.update(
                    confidence=options.confidence,
                    bootstrap_samples=options.bootstrap_samples,
                    bootstrap_seed=options.seed,
                )
            rows.append(row)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_score(mean: Any, std: Any) -> str:
    if _is_missing(mean):
        return "-"
    if _is_missing(std):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {std:.2f}"


def format_signed(value: Any) -> str:
    return "-" if _is_missing(value) else f"{value:+.2f}"


def format_interval(low: Any, high: Any) -> str:
    if _is_missing(low) or _is_missing(high):
        return "n/a"
    return f"[{low:+.2f}, {high:+.2f}]"


def format_mcnemar(row: pd.Series) -> tuple[str, str]:
    """Return the "b / c" and p-value cells of a row, "n/a" when McNemar does not apply."""
    if _is_missing(row["mcnemar_p"]):
        return "n/a", "n/a"
    counts = f"{int(row['mcnemar_first_only'])} / {int(row['mcnemar_second_only'])}"
    return counts, f"{row['mcnemar_p']:.4g}"


def protocol_cell(value: Any) -> str:
    if _is_missing(value) or value == "":
        return "same"
    if value == REFERENCE:
        return REFERENCE
    return "differs: " + value.replace(";", ", ")


@dataclass(frozen=True)
class TextTable:
    """A table of formatted cells, rendered as Markdown here and as HTML by the report."""

    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class ComparisonSection:
    """One (task, metric, sampler): its score table and, with several runs, its paired tests."""

    task: str
    metric: str
    sampler: str
    scores: TextTable
    paired_tests: TextTable | None

    @property
    def title(self) -> str:
        return f"{self.task}: {self.metric} (sampler: {self.sampler})"


def comparison_sections(table: pd.DataFrame, options: CompareOptions) -> list[ComparisonSection]:
    """Format the comparison into one section per (task, metric, sampler), in table order."""
    labels = list(dict.fromkeys(table["run"]))
    reference = labels[0]
    others = labels[1:]
    sections = []
    for (task, metric, sampler), group in table.groupby(GROUP_KEYS, sort=False):
        protocols = group.drop_duplicates("run").set_index("run")["protocol_differences"]
        score_rows = [["protocol", *(protocol_cell(protocols.get(label)) for label in labels), *([""] * len(others))]]
        for shots, shot_rows in group.groupby("shots", sort=True):
            by_run = shot_rows.set_index("run")
            cells = [str(shots)]
            cells += [format_score(by_run.at[label, "mean"], by_run.at[label, "std"]) for label in labels]
            cells += [format_signed(by_run.at[label, "delta"]) for label in others]
            score_rows.append(cells)
        scores = TextTable(["shots", *labels, *(f"Δ {label}" for label in others)], score_rows)

        paired = None
        if others:
            paired_rows = []
            later_runs = group[group["run"] != reference].sort_values(["shots"], kind="stable")
            for row in later_runs.to_dict("records"):
                counts, p_value = format_mcnemar(pd.Series(row))
                pairs = 0 if _is_missing(row["paired_samples"]) else int(row["paired_samples"])
                paired_rows.append([
                    str(row["shots"]), row["run"], str(pairs), format_signed(row["mean_difference"]),
                    format_interval(row["ci_low"], row["ci_high"]), counts, p_value,
                ])
            header = ["shots", "run", "pairs", "mean difference", f"{options.confidence:.0%} CI",
                      "McNemar b / c", "McNemar p"]
            paired = TextTable(header, paired_rows)
        sections.append(ComparisonSection(task, metric, sampler, scores, paired))
    return sections


def has_protocol_differences(table: pd.DataFrame) -> bool:
    return not table["protocol_differences"].fillna("").isin(["", REFERENCE]).all()


def markdown_table(table: TextTable, right_aligned: set[int] | None = None) -> list[str]:
    """Render a table as Markdown lines; columns in `right_aligned` (default: all) align right."""
    aligned = set(range(len(table.header))) if right_aligned is None else right_aligned
    lines = ["| " + " | ".join(table.header) + " |"]
    lines.append("|" + "".join("---:|" if index in aligned else "---|" for index in range(len(table.header))))
    for row in table.rows:
        lines.append("| " + " | ".join(row) + " |")
    return lines


PAIRED_RIGHT_ALIGNED = {0, 2, 3, 6}


def format_markdown(table: pd.DataFrame, options: CompareOptions, heading_level: int = 2) -> str:
    """Render the comparison as Markdown: per task, a score table and a paired-test table."""
    reference = table["run"].iloc[0]
    sections = comparison_sections(table, options)
    lines: list[str] = []
    for section in sections:
        lines.append(f"{'#' * heading_level} {section.title}")
        lines.append("")
        lines.extend(markdown_table(section.scores))
        lines.append("")
        if section.paired_tests is not None:
            lines.append(f"Paired tests against {reference}:")
            lines.append("")
            lines.extend(markdown_table(section.paired_tests, PAIRED_RIGHT_ALIGNED))
            lines.append("")
    if len(set(table["run"])) > 1:
        lines.append(method_description(options))
    if has_protocol_differences(table):
        lines.append("")
        lines.append(protocol_warning(reference))
    return "\n".join(lines).rstrip() + "\n"


def protocol_warning(reference: str) -> str:
    return (
        f"Warning: some runs differ from {reference} in their protocol (see the 'protocol' rows); "
        "their scores are not directly comparable."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flamingo-eval compare",
        description=(
            "Compare run folders: a table per task with one column per run, differences from the "
            "first run, and paired tests on per-sample scores."
        ),
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders; the first is the reference")
    parser.add_argument("--output", type=Path, help="write the comparison as CSV to this file")
    parser.add_argument("--labels", help="comma-separated run names for the table (default: folder names)")
    parser.add_argument("--bootstrap-samples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap generator seed (default: 0)")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level of the interval (default: 0.95)")
    return parser


def options_from_args(args: argparse.Namespace) -> CompareOptions:
    """Check the paired-test options shared by `compare` and `report`."""
    if args.bootstrap_samples < 1:
        raise InputError(f"--bootstrap-samples {args.bootstrap_samples} must be at least 1")
    if not 0 < args.confidence < 1:
        raise InputError(f"--confidence {args.confidence} must lie strictly between 0 and 1 (example: 0.95)")
    return CompareOptions(bootstrap_samples=args.bootstrap_samples, seed=args.seed, confidence=args.confidence)


def parse_labels(text: str | None) -> list[str] | None:
    return None if text is None else [label.strip() for label in text.split(",")]


def main(argv: list[str]) -> int:
    """Print the comparison as Markdown and optionally write it as CSV; return the exit code."""
    args = build_parser().parse_args(argv)
    if len(args.runs) < 2:
        raise InputError("compare needs at least two run folders (the first is the reference)")
    options = options_from_args(args)
    runs = load_runs(args.runs, parse_labels(args.labels))
    for run in runs:
        if not run.complete:
            logger.warning("%s: status is %r, not 'complete'; its scores may be partial", run.path, run.metadata.get("status"))
    table = compare_runs(runs, options)
    print(format_markdown(table, options), end="")
    if args.output is not None:
        write_atomic(args.output, table.to_csv(index=False))
        logger.info("wrote comparison to %s", args.output)
    return 0
