"""Evaluate a model on tasks and write a run folder; the code path behind `flamingo-eval run`."""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from flamingo_eval import data as data_loading
from flamingo_eval.distributed import DistContext
from flamingo_eval.errors import InputError
from flamingo_eval.journal import read_journals, repair_journal
from flamingo_eval.metrics import METRICS
from flamingo_eval.metrics.captioning import CAPTION_METRICS, check_java
from flamingo_eval.postprocess import check_postprocess
from flamingo_eval.models.base import EvalModel
from flamingo_eval.registry import TaskSpec
from flamingo_eval.results import RunDirectory, fingerprint, new_run_id, package_versions
from flamingo_eval.resume import check_resumable, find_unfinished_run
from flamingo_eval.prompts import demo_count
from flamingo_eval.runner import RequestHook, RunOptions, TaskRunner

logger = logging.getLogger(__name__)

DEFAULT_RESULTS_DIR = Path("results")

# Deliberate departures from OpenFlamingo's evaluation code, recorded in every run's metadata.
PROTOCOL_DEVIATIONS = {
    "attention_mask_and_position_ids": (
        "every forward gets an attention mask and position ids derived from it; OpenFlamingo "
        "passes none to its ranking forwards, so its scores can depend on batch composition"
    ),
    "per_item_demo_sampling": (
        "each item's demonstrations come from a generator seeded by a hash of (trial seed, item "
        "id); OpenFlamingo samples per batch from Python's random seeded with seed + rank"
    ),
    "join_annotations_by_id": (
        "VQA questions are joined to annotations by question_id; OpenFlamingo pairs them by "
        "list position"
    ),
    "suppress_image_token_in_generation": (
        "the <image> token cannot be generated; in OpenFlamingo's code a generated <image> "
        "changes how every other request in the batch attends to its images"
    ),
    "okvqa_tokenize_preserve_line": (
        "OK-VQA stemming tokenises with nltk.word_tokenize(preserve_line=True) (no punkt "
        "sentence split); differs from OpenFlamingo only for multi-sentence answers"
    ),
}


def resolve_data_dir(root: Path, task: TaskSpec) -> Path:
    """Return the task's data folder: `root/<task name>` when it exists, else `root` itself."""
    candidate = root / task.name
    folder = candidate if candidate.is_dir() else root
    if not folder.is_dir():
        raise InputError(
            f"data folder {folder} not found for task {task.name}; pass --data-dir, or create a "
            f"sample with: flamingo-eval sample-data {task.name} {candidate}"
        )
    return folder


def check_task_requirements(task: TaskSpec) -> None:
    """Fail before any model work when a post-processing step or metric lacks what it needs."""
    check_postprocess(task.postprocess)
    unknown = [name for name in task.metric_names if name not in METRICS]
    if unknown:
        raise InputError(
            f"{task.source_path}: unknown metric {unknown[0]!r}; known metrics: {', '.join(METRICS)}"
        )
    if any(name in CAPTION_METRICS for name in task.metric_names):
        check_java()


def check_demo_supply(task: TaskSpec, options: RunOptions, demo_split_size: int) -> None:
    """Fail before any model work when the largest shot count needs more demos than exist."""
    needed = max(demo_count(shots, options.prompt) for shots in options.shots)
    available = demo_split_size
    where = f"the {task.data.demo_split} split of {task.name}"
    if options.sampler == "random" and options.demos_per_class is None:
        available = min(options.query_set_size, demo_split_size)
        where = f"the query set ({available} of {demo_split_size} {task.data.demo_split} examples)"
    if needed > available:
        raise InputError(
            f"{needed} demonstrations requested but {where} has {available} examples; "
            "lower --shots or raise --query-set-size"
        )


def protocol_options(task: TaskSpec, options: RunOptions) -> dict[str, Any]:
    """Collect the protocol settings that decide a task's scores, for metadata and fingerprints."""
    return {
        "prompt": asdict(task.prompt),
        "generation": asdict(task.generation) if task.generation else None,
        "ranking": asdict(task.ranking) if task.ranking else None,
        "postprocess": task.postprocess,
        "metrics": task.metrics,
        "sampler": options.sampler,
        "rices": rices_settings(options),
        "demo_order": options.demo_order if options.sampler == "rices" else None,
        "demos_per_class": options.demos_per_class,
        "prompt_ensembles": options.prompt_ensembles if task.kind == "ranking" else None,
        "zero_shot_text_demos": options.prompt.zero_shot_text_demos,
        "query_set_size": options.query_set_size,
        "demo_split": task.data.demo_split,
        "eval_split": task.data.eval_split,
    }


def rices_settings(options: RunOptions) -> dict[str, Any] | None:
    """Return the RICES settings that decide which demos are retrieved (None for random demos)."""
    if options.sampler != "rices":
        return None
    rices = options.rices
    return {"encoder": rices.encoder, "pretrained": rices.pretrained, "backend": rices.backend}


def evaluate(
    model: EvalModel | Callable[[], EvalModel],
    tasks: list[TaskSpec],
    options: RunOptions,
    *,
    data_root: Path = Path("data"),
    source: str = "files",
    output_dir: Path | None = None,
    results_dir: Path = DEFAULT_RESULTS_DIR,
    command: list[str] | None = None,
    request_hook: RequestHook | None = None,
    dist_context: DistContext | None = None,
) -> tuple[pd.DataFrame | None, Path]:
    """Evaluate `model` on `tasks`; return the summary table and the run folder.

    `model` may be a function that builds the model: it is then called only after every input
    has been loaded and checked, so bad data stops the run before any model work. Under
    torchrun, pass the `DistContext`: every rank evaluates its shard, and only rank 0 writes
    the summary and returns it (other ranks return None).
    """
    dist_context = dist_context or DistContext()
    prepared = []
    for task in tasks:
        data_dir = resolve_data_dir(data_root, task)
        check_task_requirements(task)
        demo_examples = data_loading.load_split(task, task.data.demo_split, data_dir, source)
        eval_examples = data_loading.load_split(task, task.data.eval_split, data_dir, source)
        class_names = data_loading.load_class_names(task, data_dir) if task.kind == "ranking" else None
        check_demo_supply(task, options, len(demo_examples))
        prepared.append((task, data_dir, demo_examples, eval_examples, class_names))

    if not isinstance(model, EvalModel):
        model = model()
    config = {
        "model": model.identity(),
        "tasks": {
            task.name: {
                "file_sha256": task.file_sha256,
                "protocol": protocol_options(task, options),
                "num_eval_examples": len(eval_examples),
                "num_demo_examples": len(demo_examples),
            }
            for task, _, demo_examples, eval_examples, _ in prepared
        },
        "shots": options.shots,
        "seeds": options.seeds,
        "num_samples": options.num_samples,
        "data_source": source,
        "versions": package_versions(),
    }
    config_fingerprint = fingerprint(config)

    run_path, previous = dist_context.broadcast(
        choose_run_folder(config, config_fingerprint, output_dir, results_dir)
        if dist_context.is_main
        else None
    )
    run_dir = RunDirectory(run_path, rank=dist_context.rank)
    repair_journal(run_dir.journal_path)
    dist_context.barrier()
    finished = read_journals(run_dir.path) if previous is not None else {}
    dist_context.barrier()

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    metadata = {
        **config,
        "fingerprint": config_fingerprint,
        "command": command if command is not None else sys.argv,
        "batch_size": options.batch_size if options.batch_size is not None else "auto",
        "world_size": dist_context.world_size,
        "data_dirs": {task.name: str(data_dir.resolve()) for task, data_dir, *_ in prepared},
        "task_files": {task.name: str(task.source_path) for task in tasks},
        "protocol_deviations": PROTOCOL_DEVIATIONS,
        "started_at": previous["started_at"] if previous else now,
        "resumed_at": [*(previous or {}).get("resumed_at", []), now] if previous else [],
        "status": "running",
    }
    if dist_context.is_main:
        run_dir.write_metadata(metadata)
        logger.info(
            "%s run in %s (%d finished predictions)",
            "resuming" if previous else "writing", run_dir.path, len(finished),
        )

    try:
        for task, _, demo_examples, eval_examples, class_names in prepared:
            runner = TaskRunner(
                task,
                model,
                options,
                run_dir,
                class_names=class_names,
                finished=finished,
                dist_context=dist_context,
                request_hook=request_hook,
            )
            runner.run(demo_examples, eval_examples)
        summary = run_dir.write_summary() if dist_context.is_main else None
    finally:
        run_dir.close()

    if dist_context.is_main:
        metadata["status"] = "complete"
        metadata["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        run_dir.write_metadata(metadata)
    return summary, run_dir.path


def choose_run_folder(
    config: dict[str, Any], config_fingerprint: str, output_dir: Path | None, results_dir: Path
) -> tuple[Path, dict[str, Any] | None]:
    """Pick the run folder and return it with the metadata of the run it resumes (or None).

    An `output_dir` holding a run of this configuration is resumed, and one holding another
    configuration is rejected. Without `output_dir`, the newest unfinished run of the same
    configuration under `results_dir` is resumed, so re-running a command continues it.
    """
    if output_dir is not None:
        return Path(output_dir), check_resumable(Path(output_dir), config)
    unfinished = find_unfinished_run(results_dir, config_fingerprint)
    if unfinished is not None:
        return unfinished, check_resumable(unfinished, config)
    return results_dir / new_run_id(config_fingerprint), None
