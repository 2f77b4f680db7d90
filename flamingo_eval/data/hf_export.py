"""Export a task's splits from its official files to parquet, for the Hugging Face source.

Each split is loaded with the task's file loader and written where the task file's `data.hf`
section reads it: the split's `data_files` pattern (for example `hf/val-*.parquet`) with the
`*` replaced by the shard number, below the output data folder. Columns are named by the
split's `data.hf.columns` mapping and rows keep the loader's order, so `--source hf` builds
the same examples as `--source files`. Images are embedded as `datasets.Image` bytes, so the
exported folder needs no image folders.

A split whose `data.hf` entry has no `data_files` (a hub id or a saved dataset) is written to
`hf/<split>-*.parquet`, and the task file must then be pointed at those files.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path
from typing import Any, Callable

from flamingo_eval.data import load_split
from flamingo_eval.data.example import Example
from flamingo_eval.data.hf import DEFAULT_COLUMNS, _split_source
from flamingo_eval.data.imagefolder import CLASS_NAMES_FILE
from flamingo_eval.errors import InputError
from flamingo_eval.registry import TaskSpec, load_task

logger = logging.getLogger(__name__)

FALLBACK_PATTERN = "hf/{split}-*.parquet"
# A shard is closed once its images reach this size, which bounds the memory that building
# one shard takes.
MAX_SHARD_IMAGE_BYTES = 500 * 1024 * 1024

# Maps our column names (see DEFAULT_COLUMNS) to one example's values.
RowBuilder = Callable[[Example], dict[str, Any]]


def export_parquet(
    task: TaskSpec,
    data_dir: Path,
    out_dir: Path | None = None,
    *,
    splits: list[str] | None = None,
    max_shard_image_bytes: int = MAX_SHARD_IMAGE_BYTES,
) -> list[Path]:
    """Write every split (or only `splits`) of `task` as parquet and return the files written.

    `out_dir` is the data folder that `--source hf` will read (default: `data_dir`). When it
    differs from `data_dir`, a ranking task's class names file is copied there too, because the
    runner reads the class names from the data folder with either source.

    NOTE: VQA rows embed their image once per question, so a VQA split's parquet files are
    several times the size of its image folder (VQAv2 has about 5 questions per image).
    """
    data_dir = Path(data_dir)
    out_dir = data_dir if out_dir is None else Path(out_dir)
    builder = ROW_BUILDERS.get(task.data.loader)
    if builder is None:
        raise InputError(
            f"task {task.name}: loader {task.data.loader!r} cannot be exported; expected one "
            f"of {', '.join(ROW_BUILDERS)}"
        )
    selected = list(task.data.splits) if splits is None else splits
    unknown = [split for split in selected if split not in task.data.splits]
    if unknown:
        raise InputError(
            f"task {task.name}: unknown split {unknown[0]!r}; the task file has "
            f"{', '.join(task.data.splits)}"
        )

    written = []
    for split in selected:
        examples = load_split(task, split, data_dir, source="files")
        pattern, columns = _split_layout(task, split)
        rows = _dataset_rows(examples, builder, columns, task.name, split)
        shards = _write_shards(rows, columns["image"], out_dir, pattern, max_shard_image_bytes)
        written.extend(shards)
        logger.info("exported %d examples of %s split %s", len(rows), task.name, split)
    if out_dir.resolve() != data_dir.resolve():
        _copy_class_names(task, data_dir, out_dir)
    return written


def _split_layout(task: TaskSpec, split: str) -> tuple[str, dict[str, str]]:
    """Return the split's parquet file pattern and its column mapping (ours -> dataset's)."""
    source: dict[str, Any] = {}
    if task.data.hf is not None and _names_a_location(task.data.hf, split):
        source = _split_source(task, split)
    elif task.data.hf is not None:
        # data.hf gives the split no location, so it gets the fallback pattern below.
        entry = (task.data.hf.get("splits") or {}).get(split)
        entry_columns = entry.get("columns") if isinstance(entry, dict) else None
        source = {"columns": {**(task.data.hf.get("columns") or {}), **(entry_columns or {})}}
    columns = {**DEFAULT_COLUMNS, **(source.get("columns") or {})}

    data_files = source.get("data_files")
    if isinstance(data_files, (list, tuple)):
        data_files = data_files[0] if len(data_files) == 1 else None
    if not isinstance(data_files, str):
        pattern = FALLBACK_PATTERN.format(split=split)
        logger.warning(
            "task %s: data.hf has no single data_files pattern for split %s, so it is written "
            "to %s; set data.hf.data_files.%s to that pattern to read it with --source hf",
            task.name, split, pattern, split,
        )
        return pattern, columns
    return data_files, columns


def _names_a_location(hf: dict[str, Any], split: str) -> bool:
    """Return whether data.hf gives the split a path or data files, at the top or its own."""
    entry = (hf.get("splits") or {}).get(split)
    entry = entry if isinstance(entry, dict) else {}
    data_files = entry.get("data_files") or hf.get("data_files")
    if isinstance(data_files, dict):
        data_files = data_files.get(split)
    return bool(entry.get("path") or hf.get("path") or data_files)


def _dataset_rows(
    examples: list[Example],
    builder: RowBuilder,
    columns: dict[str, str],
    task_name: str,
    split: str,
) -> list[dict[str, Any]]:
    """Build the split's rows under the dataset's column names, leaving out all-None columns."""
    ours = [builder(example) for example in examples]
    _restore_integer_ids(ours)
    present = {name for row in ours for name, value in row.items() if value is not None}

    rows = []
    for example, values in zip(examples, ours):
        row: dict[str, Any] = {}
        for name, value in values.items():
            if name not in present:
                continue
            column = columns[name]
            if column in row and row[column] != value:
                raise InputError(
                    f"task {task_name}, split {split!r}: data.hf.columns maps two fields to "
                    f"column {column!r}, but item {example.id} has different values for them; "
                    "give each field its own column"
                )
            row[column] = value
        row[columns["image"]] = _image_value(example)
        rows.append(row)
    return rows


def _restore_integer_ids(rows: list[dict[str, Any]]) -> None:
    """Turn the split's string ids back into integers when every one is a canonical integer.

    Loaders turn ids such as question_id 262148 into "262148". The parquet files keep the
    official files' integer type, and the HF source turns them back into the same strings.
    Image ids stay as the loader returns them, because they are prompt fields.
    """
    values = [row["id"] for row in rows]
    if not all(value.isdigit() and str(int(value)) == value for value in values):
        return
    for row in rows:
        row["id"] = int(row["id"])


def _image_value(example: Example) -> dict[str, Any]:
    """Return the example's image as the `datasets.Image` storage struct (bytes and a name)."""
    image = example.image
    if image.path is not None:
        try:
            data = image.path.read_bytes()
        except OSError as error:
            raise InputError(f"{image.path}: cannot read image ({error.strerror})") from None
        return {"bytes": data, "path": image.path.name}
    if image.load_bytes is None:
        raise InputError(f"item {example.id}: image {image.key} has neither a path nor bytes")
    return {"bytes": image.load_bytes(), "path": None}


def _write_shards(
    rows: list[dict[str, Any]],
    image_column: str,
    out_dir: Path,
    pattern: str,
    max_shard_image_bytes: int,
) -> list[Path]:
    """Write rows to parquet shards named after `pattern` and return their paths.

    Files that already match the pattern are deleted first, because the HF source would read a
    stale shard of an earlier export along with the new ones.
    """
    import datasets

    target = out_dir / pattern
    target.parent.mkdir(parents=True, exist_ok=True)
    if "*" not in target.name:
        shards = [rows]
    else:
        for stale in sorted(target.parent.glob(target.name)):
            logger.info("removing %s from an earlier export", stale)
            stale.unlink()
        shards = _split_by_image_bytes(rows, image_column, max_shard_image_bytes)

    paths = []
    for index, shard in enumerate(shards):
        name = target.name.replace("*", f"{index:05d}-of-{len(shards):05d}", 1)
        path = target.parent / name
        dataset = datasets.Dataset.from_list(shard).cast_column(image_column, datasets.Image())
        temporary = path.with_name(f".{path.name}.tmp")
        dataset.to_parquet(str(temporary))
        temporary.replace(path)
        paths.append(path)
    return paths


def _split_by_image_bytes(
    rows: list[dict[str, Any]], image_column: str, max_bytes: int
) -> list[list[dict[str, Any]]]:
    """Group consecutive rows into shards whose images add up to at most `max_bytes` each.

    A shard always gets at least one row, so a single larger image still makes one shard.
    """
    shards: list[list[dict[str, Any]]] = [[]]
    size = 0
    for row in rows:
        image_size = len(row[image_column]["bytes"])
        if shards[-1] and size + image_size > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(row)
        size += image_size
    return shards


def _copy_class_names(task: TaskSpec, data_dir: Path, out_dir: Path) -> None:
    """Copy the class names file of a task whose names come from the data folder."""
    if task.ranking is None or not isinstance(task.ranking.class_names, str):
        return
    settings = task.data.splits.get(task.data.eval_split) or {}
    relative = settings.get("class_names") or CLASS_NAMES_FILE
    source = data_dir / relative
    if source.is_file():
        destination = out_dir / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
        logger.info("copied the class names to %s", destination)


def _vqa_row(example: Example) -> dict[str, Any]:
    return {
        "id": example.id,
        "image_id": example.fields["image_id"],
        "question": example.fields["question"],
        "answers": None if example.target is None else [dict(record) for record in example.target],
    }


def _caption_row(example: Example) -> dict[str, Any]:
    return {
        "id": example.id,
        "image_id": example.fields["image_id"],
        "captions": list(example.target),
    }


def _classification_row(example: Example) -> dict[str, Any]:
    return {"id": example.id, "label": example.target}


def _meme_row(example: Example) -> dict[str, Any]:
    return {"id": example.id, "text": example.fields["ocr"], "label": example.target}


ROW_BUILDERS: dict[str, RowBuilder] = {
    "vqa": _vqa_row,
    "karpathy": _caption_row,
    "imagefolder": _classification_row,
    "hateful_memes": _meme_row,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flamingo-eval export-hf",
        description=(
            "Write a task's splits, read from its official files, as parquet files with "
            "embedded images where the task file's data.hf section reads them, so the task "
            "runs with --source hf."
        ),
    )
    parser.add_argument("task", help="task name or task file path")
    parser.add_argument("data_dir", type=Path, help="the task's data folder (official layout)")
    parser.add_argument(
        "--output",
        type=Path,
        help="data folder to write the parquet files into (default: DATA_DIR itself)",
    )
    parser.add_argument(
        "--split",
        action="append",
        help="export only this split; repeat for several (default: every split of the task)",
    )
    return parser


def main(argv: list[str]) -> int:
    """Export the task's splits and print the files written; return the exit code."""
    args = build_parser().parse_args(argv)
    task = load_task(args.task)
    paths = export_parquet(task, args.data_dir, args.output, splits=args.split)
    for path in paths:
        print(f"wrote {path}")
    return 0
