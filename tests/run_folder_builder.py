"""Build run folders by hand, with known per-sample scores, for compare/check/report tests.

The folders follow the layout `flamingo_eval.results.RunDirectory` writes; trial values are the
mean of the given per-sample scores, as for VQA accuracy and top-1.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_PROTOCOL = {
    "prompt": {"demo": "<image>Question:{question} Short answer:{answer}<|endofchunk|>",
               "query": "<image>Question:{question} Short answer:", "separator": "\n"},
    "sampler": "random",
    "postprocess": ["vqa_answer"],
    "metrics": [{"name": "vqa_accuracy"}],
    "query_set_size": 2048,
    "zero_shot_text_demos": 2,
}

# Scores keyed by task, then (shots, seed), then sample id.
Scores = dict[str, dict[tuple[int, int], dict[str, float]]]


def write_run(
    path: Path,
    scores: Scores,
    *,
    metrics: dict[str, str] | None = None,
    model: str = "model-a",
    protocol: dict[str, dict[str, Any]] | None = None,
    num_samples: int | None = None,
    seeds: list[int] | None = None,
    status: str = "complete",
    records_extra: dict[str, dict[str, Any]] | None = None,
    data_dirs: dict[str, str] | None = None,
    task_files: dict[str, str] | None = None,
) -> Path:
    """Write metadata.json, predictions.jsonl, trials.csv and summary.csv under `path`.

    `metrics` maps a task to its metric name (default vqa_accuracy). `protocol` replaces a task's
    protocol dict, and `records_extra` maps sample ids to fields added to their records.
    """
    metrics = metrics or {}
    protocol = protocol or {}
    records_extra = records_extra or {}
    path.mkdir(parents=True, exist_ok=True)

    all_shots = sorted({shots for by_trial in scores.values() for shots, _ in by_trial})
    all_seeds = sorted({seed for by_trial in scores.values() for _, seed in by_trial})
    tasks_metadata = {}
    records = []
    trial_rows = []
    for task, by_trial in scores.items():
        metric = metrics.get(task, "vqa_accuracy")
        task_protocol = copy.deepcopy(protocol.get(task, DEFAULT_PROTOCOL))
        tasks_metadata[task] = {
            "file_sha256": f"sha-{task}",
            "protocol": task_protocol,
            "num_eval_examples": 100,
            "num_demo_examples": 200,
        }
        for (shots, seed), per_sample in by_trial.items():
            for sample_id, value in per_sample.items():
                records.append({
                    "task": task, "shots": shots, "seed": seed, "sampler": "random",
                    "sample_id": sample_id, "demo_ids": [], "prompt": f"<image>Question:q{sample_id}?",
                    "prediction": f"answer {sample_id}", "target": [{"answer": "x"}],
                    "fields": {"question": f"What is item {sample_id}?", "image_id": sample_id},
                    "scores": {metric: value},
                    **records_extra.get(sample_id, {}),
                })
            trial_rows.append({
                "task": task, "shots": shots, "sampler": "random", "seed": seed, "metric": metric,
                "value": float(np.mean(list(per_sample.values()))), "num_samples": len(per_sample),
            })

    metadata = {
        "model": {"name": model, "preset": model},
        "tasks": tasks_metadata,
        "shots": all_shots,
        "seeds": seeds if seeds is not None else all_seeds,
        "num_samples": num_samples,
        "fingerprint": f"fingerprint-{model}",
        "status": status,
        "data_dirs": data_dirs or {task: str(path / "data") for task in scores},
        "task_files": task_files or {},
        "versions": {"flamingo-eval": "0.1.0"},
        "protocol_deviations": {"per_item_demo_sampling": "demos drawn per item"},
    }
    (path / "metadata.json").write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    (path / "predictions.jsonl").write_text(
        "".join(json.dumps(record) + "\n" for record in records), encoding="utf-8"
    )
    trials = pd.DataFrame(trial_rows)
    trials.to_csv(path / "trials.csv", index=False)
    if status == "complete":
        from flamingo_eval.results import summarize

        summarize(trials).to_csv(path / "summary.csv", index=False)
    return path
