"""EvalAI submission files for VQA splits without public answers (VQAv2 and VizWiz test-dev).

A run on such a split has no score, so its predictions go to the benchmark's evaluation
server instead. Answers are cleaned and normalised (punctuation, number words, articles,
contractions) as OpenFlamingo's fill_vqa_testdev_results script does before submission.
Entries:
- VQAv2 and most VQA-format tasks: {"question_id": ..., "answer": ...}, with the question id as
  the questions file gives it (an integer for VQAv2).
- VizWiz: {"image": image file name, "answer": ...}, because the VizWiz server matches
  answers by image.

NOTE: the file holds only the evaluated questions. EvalAI's VQAv2 challenge expects answers for
every question of test2015 (test-dev is a subset), so questions outside the run must be added
with empty answers before uploading.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable

from flamingo_eval.errors import InputError
from flamingo_eval.metrics.vqa_normalization import clean_whitespace, normalize_answer
from flamingo_eval.registry import TaskSpec
from flamingo_eval.results import write_atomic

logger = logging.getLogger(__name__)

# The submission entry's key for a task's items: "question_id" or "image". A task file may set
# it with `extra: {submission_id_field: image}`, and these are the built-in tasks' values.
DEFAULT_ID_FIELDS = {"vizwiz": "image"}
ID_FIELDS = ("question_id", "image")


def submission_path(run_dir: Path, task_name: str, shots: int, seed: int) -> Path:
    """Return the submission file's path for one (task, shots, trial seed) group."""
    return Path(run_dir) / f"submission_{task_name}_{shots}shot_seed{seed}.json"


def write_submission(
    task: TaskSpec, records: Iterable[dict[str, Any]], run_dir: Path
) -> list[Path]:
    """Write one EvalAI submission file per (shots, seed) group of `records`; return the paths.

    `records` are the runner's prediction records of `task` (with "shots", "seed",
    "sample_id", "prediction" and "fields"), in the order they were evaluated.
    """
    id_field = submission_id_field(task)
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["shots"], record["seed"]), []).append(record)

    paths = []
    for (shots, seed), group in groups.items():
        entries = [_submission_entry(record, id_field, task.name) for record in group]
        path = submission_path(run_dir, task.name, shots, seed)
        write_atomic(path, json.dumps(entries) + "\n")
        logger.info(
            "wrote %d answers of %s (%d shots, seed %d) to %s",
            len(entries), task.name, shots, seed, path,
        )
        paths.append(path)
    return paths


def submission_id_field(task: TaskSpec) -> str:
    """Return the key that identifies an item in the task's submission file."""
    field = task.extra.get("submission_id_field", DEFAULT_ID_FIELDS.get(task.name, "question_id"))
    if field not in ID_FIELDS:
        raise InputError(
            f"{task.source_path}: extra.submission_id_field is {field!r}; expected one of "
            f"{', '.join(ID_FIELDS)}"
        )
    return field


def _submission_entry(record: dict[str, Any], id_field: str, task_name: str) -> dict[str, Any]:
    prediction = record.get("prediction")
    if not isinstance(prediction, str):
        raise InputError(
            f"task {task_name}: sample {record.get('sample_id')!r} has prediction "
            f"{prediction!r}; a submission needs answer strings"
        )
    answer = normalize_answer(clean_whitespace(prediction))
    if id_field == "image":
        image_id = (record.get("fields") or {}).get("image_id")
        if image_id is None:
            raise InputError(
                f"task {task_name}: sample {record['sample_id']!r} has no image_id field; "
                "the submission identifies answers by image"
            )
        return {"image": image_id, "answer": answer}
    return {"question_id": _question_id(record["sample_id"]), "answer": answer}


def _question_id(sample_id: str) -> int | str:
    """Return the question id as the questions file has it: an integer when it is one."""
    if sample_id.isdigit() and str(int(sample_id)) == sample_id:
        return int(sample_id)
    return sample_id
