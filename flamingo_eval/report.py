"""`flamingo-eval report`: an HTML page and a Markdown file describing one or more runs.

The HTML page is self-contained: plots and example images are embedded as base64 PNG, styles
are inline, and it loads nothing else. The Markdown file refers to the same pictures, written as
PNG files under `plots/` and `images/` beside it.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from flamingo_eval.compare import (
    GROUP_KEYS,
    PAIRED_RIGHT_ALIGNED,
    CompareOptions,
    TextTable,
    compare_runs,
    comparison_sections,
    has_protocol_differences,
    markdown_table,
    method_description,
    options_from_args,
    parse_labels,
    protocol_warning,
)
from flamingo_eval.errors import InputError
from flamingo_eval.report_assets import ImageFinder, score_plot
from flamingo_eval.results import write_atomic
from flamingo_eval.run_reader import Run, load_runs

logger = logging.getLogger(__name__)

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1em 0; }
th, td { border: 1px solid #bbb; padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: #eee; }
td.text, th.text { text-align: left; }
td.flag { color: #a00; font-weight: bold; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
img.plot { border: 1px solid #ddd; }
p.warning { color: #a00; font-weight: bold; }
p.method { font-size: 13px; color: #444; }
"""


@dataclass
class ExamplePrediction:
    """One evaluated item, with each run's prediction and score on it."""

    task: str
    shots: int
    seed: int
    sample_id: str
    inputs: dict[str, Any]
    target: str
    predictions: dict[str, str]
    image_png: bytes | None = None


@dataclass
class ReportContent:
    """Everything a report shows, before rendering."""

    runs: list[Run]
    table: pd.DataFrame
    options: CompareOptions
    plots: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    examples: list[ExamplePrediction] = field(default_factory=list)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "item"


def format_target(target: Any) -> str:
    """Shorten a target for display: answer counts for VQA, the first captions, or the value."""
    if isinstance(target, list) and target and all(isinstance(item, dict) for item in target):
        counts = Counter(str(item.get("answer", item)) for item in target)
        return ", ".join(f"{answer} ×{count}" if count > 1 else answer for answer, count in counts.most_common())
    if isinstance(target, list):
        shown = "; ".join(str(item) for item in target[:2])
        return shown + (f" (+{len(target) - 2} more)" if len(target) > 2 else "")
    return "" if target is None else str(target)


def format_prediction(record: dict[str, Any] | None) -> str:
    if record is None:
        return "-"
    scores = record.get("scores") or {}
    score_text = ", ".join(f"{name} {value:g}" for name, value in scores.items() if isinstance(value, (int, float)))
    prediction = str(record.get("prediction", ""))
    return f"{prediction} ({score_text})" if score_text else prediction


def choose_examples(runs: list[Run], per_task: int, include_images: bool) -> list[ExamplePrediction]:
    """Pick up to `per_task` items per task from the first run, at its largest shot count and
    first trial seed, preferring items on which the runs' scores differ."""
    reference = runs[0]
    by_run = []
    for run in runs:
        index = {}
        for record in run.records():
            key = (record["task"], int(record["shots"]), record.get("sampler"), int(record["seed"]), str(record["sample_id"]))
            index[key] = record
        by_run.append(index)

    finder = ImageFinder(reference) if include_images else None
    examples = []
    for task in reference.task_names:
        candidates = [record for record in reference.records() if record["task"] == task]
        if not candidates:
            continue
        shots = max(int(record["shots"]) for record in candidates)
        seed = min(int(record["seed"]) for record in candidates if int(record["shots"]) == shots)
        candidates = [r for r in candidates if int(r["shots"]) == shots and int(r["seed"]) == seed]

        def disagreement(record: dict[str, Any]) -> bool:
            key = (task, shots, record.get("sampler"), seed, str(record["sample_id"]))
            scores = {json.dumps(index.get(key, {}).get("scores"), sort_keys=True) for index in by_run}
            return len(scores) > 1

        # Stable sort: items with differing scores first, file order otherwise.
        chosen = sorted(candidates, key=lambda record: not disagreement(record))[:per_task]
        for record in chosen:
            key = (task, shots, record.get("sampler"), seed, str(record["sample_id"]))
            examples.append(
                ExamplePrediction(
                    task=task, shots=shots, seed=seed, sample_id=str(record["sample_id"]),
                    inputs=dict(record.get("fields") or {}),
                    target=format_target(record.get("target")),
                    predictions={run.label: format_prediction(index.get(key)) for run, index in zip(runs, by_run)},
                    image_png=finder.thumbnail(task, record) if finder else None,
                )
            )
    return examples


def build_content(runs: list[Run], options: CompareOptions, examples_per_task: int, include_images: bool) -> ReportContent:
    """Compute the comparison, the plots and the example predictions of a report."""
    table = compare_runs(runs, options)
    content = ReportContent(runs=runs, table=table, options=options)
    for key, group in table.groupby(GROUP_KEYS, sort=False):
        task, metric, sampler = key
        content.plots[key] = score_plot(group, f"{task} ({sampler})", metric)
    if examples_per_task > 0:
        content.examples = choose_examples(runs, examples_per_task, include_images)
    return content


def run_facts(run: Run) -> list[tuple[str, str]]:
    """List a run's identifying metadata as (name, value) pairs."""
    metadata = run.metadata
    facts = [("path", str(run.path)), ("status", str(metadata.get("status")))]
    for name, value in (metadata.get("model") or {}).items():
        facts.append((f"model.{name}", str(value)))
    for name in ("shots", "seeds", "num_samples", "batch_size", "fingerprint", "started_at", "finished_at"):
        if name in metadata:
            facts.append((name, json.dumps(metadata[name]) if isinstance(metadata[name], list) else str(metadata[name])))
    if "command" in metadata:
        command = metadata["command"]
        facts.append(("command", " ".join(command) if isinstance(command, list) else str(command)))
    for name, version in (metadata.get("versions") or {}).items():
        facts.append((f"version.{name}", str(version)))
    return facts


def task_protocols(run: Run) -> dict[str, dict[str, Any]]:
    return {task: entry for task, entry in run.metadata.get("tasks", {}).items()}


# ----- HTML -----

def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def html_table(table: TextTable, text_columns: set[int] = frozenset(), flag_rows: bool = False) -> str:
    """Render a TextTable as HTML; cells starting with "differs" get the flag style when asked."""
    parts = ["<table>", "<thead><tr>"]
    for index, name in enumerate(table.header):
        css = ' class="text"' if index in text_columns else ""
        parts.append(f"<th{css}>{html.escape(name)}</th>")
    parts.append("</tr></thead><tbody>")
    for row in table.rows:
        parts.append("<tr>")
        for index, cell in enumerate(row):
            classes = []
            if index in text_columns:
                classes.append("text")
            if flag_rows and cell.startswith("differs"):
                classes.append("flag")
            css = f' class="{" ".join(classes)}"' if classes else ""
            parts.append(f"<td{css}>{html.escape(cell)}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def render_html(content: ReportContent) -> str:
    """Render the report as one HTML page with every picture embedded."""
    runs = content.runs
    reference = runs[0].label
    escape = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>flamingo-eval report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>flamingo-eval report</h1>",
        f"<p>{len(runs)} run(s), generated {escape(_now())}. Differences and paired tests are against "
        f"the first run, <b>{escape(reference)}</b>.</p>",
        "<h2>Runs</h2>",
        html_table(
            TextTable(["run", "model", "status", "path"],
                      [[run.label, _model_name(run), str(run.metadata.get("status")), str(run.path)] for run in runs]),
            text_columns={0, 1, 2, 3},
        ),
        "<h2>Scores</h2>",
    ]
    for section in comparison_sections(content.table, content.options):
        key = (section.task, section.metric, section.sampler)
        out.append(f"<h3>{escape(section.title)}</h3>")
        out.append(
            f'<img class="plot" alt="{escape(section.title)} versus shots" src="{_data_uri(content.plots[key])}">'
        )
        out.append(html_table(section.scores, text_columns={0}, flag_rows=True))
        if section.paired_tests is not None:
            out.append(f"<p>Paired tests against {escape(reference)}:</p>")
            out.append(html_table(section.paired_tests, text_columns={1, 4, 5}))
    if len(runs) > 1:
        out.append(f'<p class="method">{escape(method_description(content.options))}</p>')
    if has_protocol_differences(content.table):
        out.append(f'<p class="warning">{escape(protocol_warning(reference))}</p>')

    if content.examples:
        out.append("<h2>Example predictions</h2>")
        out.extend(_html_examples(content))

    out.append("<h2>Protocol and model metadata</h2>")
    for run in runs:
        out.append(f"<h3>{escape(run.label)}</h3>")
        out.append(html_table(TextTable(["field", "value"], [list(fact) for fact in run_facts(run)]), text_columns={0, 1}))
        for task, entry in task_protocols(run).items():
            out.append(f"<details><summary>{escape(task)}: protocol options</summary>")
            out.append(f"<pre>{escape(json.dumps(entry, indent=2, sort_keys=True))}</pre></details>")
        deviations = run.metadata.get("protocol_deviations") or {}
        if deviations:
            out.append("<p>Deviations from OpenFlamingo's protocol:</p><ul>")
            for name, text in deviations.items():
                out.append(f"<li><b>{escape(name)}</b>: {escape(str(text))}</li>")
            out.append("</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _html_examples(content: ReportContent) -> list[str]:
    escape = html.escape
    labels = [run.label for run in content.runs]
    out = []
    for task in dict.fromkeys(example.task for example in content.examples):
        rows = [example for example in content.examples if example.task == task]
        out.append(f"<h3>{escape(task)}: {rows[0].shots} shots, trial seed {rows[0].seed}</h3>")
        out.append("<table><thead><tr><th class=\"text\">image</th><th class=\"text\">input</th>"
                   "<th class=\"text\">target</th>")
        out.extend(f'<th class="text">{escape(label)}</th>' for label in labels)
        out.append("</tr></thead><tbody>")
        for example in rows:
            if example.image_png is not None:
                image = f'<img alt="image of sample {escape(example.sample_id)}" src="{_data_uri(example.image_png)}">'
            else:
                image = "(image not available)"
            inputs = "<br>".join(f"<b>{escape(str(k))}</b>: {escape(str(v))}" for k, v in example.inputs.items())
            out.append(f'<tr><td class="text">{image}<br>sample {escape(example.sample_id)}</td>'
                       f'<td class="text">{inputs}</td><td class="text">{escape(example.target)}</td>')
            out.extend(f'<td class="text">{escape(example.predictions[label])}</td>' for label in labels)
            out.append("</tr>")
        out.append("</tbody></table>")
    return out


# ----- Markdown -----

def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(content: ReportContent, picture_paths: dict[Any, str]) -> str:
    """Render the report as Markdown; `picture_paths` maps plot keys and examples to PNG paths."""
    runs = content.runs
    reference = runs[0].label
    lines = [
        "# flamingo-eval report",
        "",
        f"{len(runs)} run(s), generated {_now()}. Differences and paired tests are against the first "
        f"run, **{reference}**.",
        "",
        "## Runs",
        "",
        *markdown_table(
            TextTable(["run", "model", "status", "path"],
                      [[_cell(run.label), _cell(_model_name(run)), str(run.metadata.get("status")), _cell(str(run.path))] for run in runs]),
            right_aligned=set(),
        ),
        "",
        "## Scores",
        "",
    ]
    for section in comparison_sections(content.table, content.options):
        key = (section.task, section.metric, section.sampler)
        lines += [f"### {section.title}", "", f"![{section.title} versus shots]({picture_paths[key]})", ""]
        lines += markdown_table(section.scores)
        lines.append("")
        if section.paired_tests is not None:
            lines += [f"Paired tests against {reference}:", ""]
            lines += markdown_table(section.paired_tests, PAIRED_RIGHT_ALIGNED)
            lines.append("")
    if len(runs) > 1:
        lines += [method_description(content.options), ""]
    if has_protocol_differences(content.table):
        lines += [protocol_warning(reference), ""]

    if content.examples:
        lines += ["## Example predictions", ""]
        labels = [run.label for run in runs]
        for task in dict.fromkeys(example.task for example in content.examples):
            rows = [example for example in content.examples if example.task == task]
            lines += [f"### {task}: {rows[0].shots} shots, trial seed {rows[0].seed}", ""]
            table_rows = []
            for example in rows:
                picture = picture_paths.get(id(example))
                image = f"![sample {example.sample_id}]({picture})" if picture else "(image not available)"
                inputs = "; ".join(f"{k}: {v}" for k, v in example.inputs.items())
                table_rows.append([image, _cell(example.sample_id), _cell(inputs), _cell(example.target),
                                   *(_cell(example.predictions[label]) for label in labels)])
            lines += markdown_table(TextTable(["image", "sample", "input", "target", *labels], table_rows), set())
            lines.append("")

    lines += ["## Protocol and model metadata", ""]
    for run in runs:
        lines += [f"### {run.label}", ""]
        lines += markdown_table(TextTable(["field", "value"], [[_cell(a), _cell(b)] for a, b in run_facts(run)]), set())
        lines.append("")
        for task, entry in task_protocols(run).items():
            lines += [f"{task}: protocol options", "", "```json", json.dumps(entry, indent=2, sort_keys=True), "```", ""]
        deviations = run.metadata.get("protocol_deviations") or {}
        if deviations:
            lines += ["Deviations from OpenFlamingo's protocol:", ""]
            lines += [f"- **{name}**: {text}" for name, text in deviations.items()]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _model_name(run: Run) -> str:
    model = run.metadata.get("model") or {}
    return str(model.get("name") or model.get("preset") or "unknown")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_report(
    runs: list[Run],
    output_dir: Path,
    options: CompareOptions = CompareOptions(),
    examples_per_task: int = 4,
    include_images: bool = True,
) -> tuple[Path, Path]:
    """Write report.html, report.md and the Markdown's PNG files into `output_dir`."""
    content = build_content(runs, options, examples_per_task, include_images)
    output_dir.mkdir(parents=True, exist_ok=True)

    picture_paths: dict[Any, str] = {}
    for key, png in content.plots.items():
        relative = f"plots/{safe_name('-'.join(key))}.png"
        _write_bytes(output_dir / relative, png)
        picture_paths[key] = relative
    for index, example in enumerate(content.examples):
        if example.image_png is not None:
            relative = f"images/{index:03d}-{safe_name(example.task)}-{safe_name(example.sample_id)}.png"
            _write_bytes(output_dir / relative, example.image_png)
            picture_paths[id(example)] = relative

    html_path = output_dir / "report.html"
    markdown_path = output_dir / "report.md"
    write_atomic(html_path, render_html(content))
    write_atomic(markdown_path, render_markdown(content, picture_paths))
    return html_path, markdown_path


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flamingo-eval report",
        description=(
            "Write a self-contained HTML page and a Markdown file with score tables, plots, "
            "protocol and model metadata and example predictions of one or more runs."
        ),
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders; the first is the reference for differences")
    parser.add_argument("--output", type=Path, required=True, help="folder to write report.html, report.md and their pictures into")
    parser.add_argument("--labels", help="comma-separated run names (default: folder names)")
    parser.add_argument("--examples", type=int, default=4, help="example predictions shown per task (default: 4; 0 for none)")
    parser.add_argument("--no-images", action="store_true", help="do not load example images from the data folders")
    parser.add_argument("--bootstrap-samples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap generator seed (default: 0)")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level of the interval (default: 0.95)")
    return parser


def main(argv: list[str]) -> int:
    """Write the report; return the exit code."""
    args = build_parser().parse_args(argv)
    if args.examples < 0:
        raise InputError(f"--examples {args.examples} must be 0 or more")
    options = options_from_args(args)
    runs = load_runs(args.runs, parse_labels(args.labels))
    html_path, markdown_path = write_report(runs, args.output, options, args.examples, not args.no_images)
    print(f"wrote {html_path} and {markdown_path}")
    return 0
