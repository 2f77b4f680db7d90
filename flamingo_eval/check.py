"""`flamingo-eval check`: fail a CI job when a run scores below a committed baseline.

Exit codes: 0 when no score regressed, 1 when at least one did (or is missing from the run),
2 when the baseline was made under another protocol and the run was not compared. The command
line also exits with 2 on invalid input (a missing file, a malformed baseline).
"""

from __future__ import annotations

import argparse
import logging
import math
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from flamingo_eval.baseline import (
    DEFAULT_ALLOWED_DROP_POINTS,
    AllowedDrop,
    Baseline,
    BaselineEntry,
    baseline_from_run,
    load_baseline,
    write_baseline,
)
from flamingo_eval.errors import InputError
from flamingo_eval.results import write_atomic
from flamingo_eval.run_reader import Run, differing_fields, load_run

logger = logging.getLogger(__name__)

EXIT_PASSED = 0
EXIT_REGRESSED = 1
EXIT_PROTOCOL_MISMATCH = 2
# Baseline files store scores rounded to 6 decimals, so an unchanged score can read up to 5e-7
# below its baseline. The tolerance must exceed that.
TOLERANCE = 1e-6

PASSED = "passed"
REGRESSED = "regressed"
MISSING = "missing"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one baseline entry against the run."""

    entry: BaselineEntry
    run_value: float | None
    allowed_drop: float
    allowed_drop_setting: str
    status: str

    @property
    def minimum(self) -> float:
        return self.entry.value - self.allowed_drop

    @property
    def name(self) -> str:
        entry = self.entry
        return f"{entry.task} {entry.metric} {entry.shots} shots ({entry.sampler})"


def protocol_mismatches(baseline: Baseline, run: Run) -> list[str]:
    """Describe each protocol field in which the run differs from the baseline, one per line."""
    problems = []
    for task in baseline.protocol["tasks"]:
        if task not in run.metadata["tasks"]:
            problems.append(f"task {task}: in the baseline but not in the run")
            continue
        expected = baseline.task_identity(task)
        actual = run.protocol_identity(task)
        for path in differing_fields(expected, actual):
            problems.append(
                f"task {task}: {path}: baseline {_lookup(expected, path)!r}, run {_lookup(actual, path)!r}"
            )
    return problems


def _lookup(value: object, dotted: str) -> object:
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return "(absent)"
        value = value[part]
    return value


def check_scores(baseline: Baseline, run: Run) -> list[CheckResult]:
    """Compare each baseline entry with the run's summary mean."""
    means = {
        (row.task, int(row.shots), row.sampler, row.metric): row.mean
        for row in run.summary.itertuples(index=False)
    }
    results = []
    for entry in baseline.entries:
        setting = baseline.allowed_drop(entry)
        allowed = setting.amount(entry.std)
        value = means.get(entry.key)
        if value is None or math.isnan(value):
            status, run_value = MISSING, None
        else:
            run_value = float(value)
            status = REGRESSED if run_value < entry.value - allowed - TOLERANCE else PASSED
        results.append(CheckResult(entry, run_value, allowed, setting.describe(), status))
    return results


def format_results(results: list[CheckResult]) -> str:
    """Render check results as a Markdown table."""
    lines = [
        "| task | shots | sampler | metric | baseline | allowed drop | minimum | run | change | status |",
        "|---|---:|---|---|---:|---|---:|---:|---:|---|",
    ]
    for result in results:
        entry = result.entry
        run_value = "-" if result.run_value is None else f"{result.run_value:.2f}"
        change = "-" if result.run_value is None else f"{result.run_value - entry.value:+.2f}"
        lines.append(
            f"| {entry.task} | {entry.shots} | {entry.sampler} | {entry.metric} | {entry.value:.2f} | "
            f"{result.allowed_drop:.2f} ({result.allowed_drop_setting}) | {result.minimum:.2f} | "
            f"{run_value} | {change} | {result.status} |"
        )
    return "\n".join(lines)


def junit_xml(
    baseline: Baseline, run: Run, results: list[CheckResult], mismatches: list[str]
) -> ElementTree.ElementTree:
    """Build a JUnit XML report: one test case for the protocol and one per baseline entry.

    On a protocol mismatch the score test cases are marked skipped, since nothing was compared.
    """
    suite = ElementTree.Element("testsuite", name="flamingo-eval check")
    properties = ElementTree.SubElement(suite, "properties")
    ElementTree.SubElement(properties, "property", name="baseline", value=str(baseline.path))
    ElementTree.SubElement(properties, "property", name="run", value=str(run.path))

    protocol_case = ElementTree.SubElement(suite, "testcase", classname="flamingo_eval.check", name="protocol", time="0")
    if mismatches:
        failure = ElementTree.SubElement(
            protocol_case, "failure", type="protocol_mismatch",
            message=f"the baseline was made under another protocol ({len(mismatches)} difference(s))",
        )
        failure.text = "\n".join(mismatches)

    failures = 1 if mismatches else 0
    skipped = 0
    entries = [result.entry for result in results] if results else baseline.entries
    by_key = {result.entry.key: result for result in results}
    for entry in entries:
        case = ElementTree.SubElement(
            suite, "testcase", classname=f"flamingo_eval.check.{entry.task}",
            name=f"{entry.metric} {entry.shots} shots ({entry.sampler})", time="0",
        )
        result = by_key.get(entry.key)
        if result is None:
            ElementTree.SubElement(case, "skipped", message="not compared: the protocol differs from the baseline")
            skipped += 1
        elif result.status != PASSED:
            failures += 1
            run_value = "missing" if result.run_value is None else f"{result.run_value:.4f}"
            failure = ElementTree.SubElement(
                case, "failure", type=result.status,
                message=(
                    f"{result.name}: run {run_value}, baseline {entry.value:.4f}, "
                    f"minimum {result.minimum:.4f} (allowed drop {result.allowed_drop_setting})"
                ),
            )
            failure.text = failure.get("message")
    suite.set("tests", str(1 + len(entries)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    suite.set("time", "0")
    root = ElementTree.Element("testsuites")
    root.append(suite)
    ElementTree.indent(root)
    return ElementTree.ElementTree(root)


def write_junit(tree: ElementTree.ElementTree, path: Path) -> None:
    text = ElementTree.tostring(tree.getroot(), encoding="unicode", xml_declaration=True)
    write_atomic(path, text + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flamingo-eval check",
        description=(
            "Compare a run with a baseline file. Exit code 0: no regression; 1: a score fell by "
            "more than its allowed drop or is missing; 2: the baseline was made under another "
            "protocol (or the input is invalid), nothing compared."
        ),
    )
    parser.add_argument("run", type=Path, metavar="RUN_DIR", help="run folder to check")
    parser.add_argument("--baseline", type=Path, required=True, help="baseline file (YAML, or JSON when it ends in .json)")
    parser.add_argument("--junit-xml", type=Path, help="also write the result as JUnit XML to this file")
    parser.add_argument(
        "--update-baseline", action="store_true",
        help="rewrite the baseline from the run (scores and protocol) instead of checking; keeps allowed drops",
    )
    parser.add_argument(
        "--default-allowed-drop", type=float,
        help=f"with --update-baseline: allowed drop in metric points for entries without their own (new baseline default: {DEFAULT_ALLOWED_DROP_POINTS:g})",
    )
    parser.add_argument(
        "--default-allowed-drop-std", type=float,
        help="with --update-baseline: allowed drop in trial standard deviations for entries without their own",
    )
    return parser


def update_baseline(args: argparse.Namespace, run: Run) -> int:
    previous = load_baseline(args.baseline) if args.baseline.is_file() else None
    if args.default_allowed_drop is not None or args.default_allowed_drop_std is not None:
        for option, value in (("--default-allowed-drop", args.default_allowed_drop),
                              ("--default-allowed-drop-std", args.default_allowed_drop_std)):
            if value is not None and (value < 0 or math.isnan(value)):
                raise InputError(f"{option} {value} must be a non-negative number")
        default = AllowedDrop(absolute=args.default_allowed_drop, std=args.default_allowed_drop_std)
    elif previous is not None:
        default = previous.default_allowed_drop
    else:
        default = AllowedDrop(absolute=DEFAULT_ALLOWED_DROP_POINTS)
    if previous is not None:
        for line in protocol_mismatches(previous, run):
            logger.info("baseline protocol changes: %s", line)
    baseline = baseline_from_run(run, args.baseline, previous, default)
    write_baseline(baseline)
    print(f"wrote baseline {args.baseline} from {run.path} ({len(baseline.entries)} scores)")
    return EXIT_PASSED


def main(argv: list[str]) -> int:
    """Check a run against a baseline (or rewrite the baseline); return the exit code."""
    args = build_parser().parse_args(argv)
    run = load_run(args.run)
    if not run.complete:
        raise InputError(
            f"{run.path}: status is {run.metadata.get('status')!r}, not 'complete'; check only finished runs"
        )
    if args.update_baseline:
        return update_baseline(args, run)
    if args.default_allowed_drop is not None or args.default_allowed_drop_std is not None:
        raise InputError("--default-allowed-drop and --default-allowed-drop-std apply only with --update-baseline")

    baseline = load_baseline(args.baseline)
    mismatches = protocol_mismatches(baseline, run)
    results = [] if mismatches else check_scores(baseline, run)
    if args.junit_xml is not None:
        write_junit(junit_xml(baseline, run, results, mismatches), args.junit_xml)

    if mismatches:
        print(f"{baseline.path}: made under another protocol than {run.path}; not compared:")
        for line in mismatches:
            print(f"  {line}")
        print("Rerun with the baseline's settings, or regenerate the baseline with --update-baseline.")
        return EXIT_PROTOCOL_MISMATCH

    failed = [result for result in results if result.status != PASSED]
    if failed:
        print(f"{len(failed)} of {len(results)} scores regressed against {baseline.path}:\n")
        print(format_results(failed))
        return EXIT_REGRESSED
    print(f"all {len(results)} scores within their allowed drop of {baseline.path}:\n")
    print(format_results(results))
    return EXIT_PASSED
