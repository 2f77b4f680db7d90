"""Prompt ensembling for ranking tasks: class scores averaged over orders of the demos."""

from __future__ import annotations

import json
import math

import pytest

from flamingo_eval.cli import main
from flamingo_eval.runner import distinct_orders


def test_distinct_orders_identity_first():
    orders = distinct_orders(4, 6, seed=3)
    assert orders[0] == (0, 1, 2, 3)
    assert len(orders) == len(set(orders)) == 6
    assert all(sorted(order) == [0, 1, 2, 3] for order in orders)
    assert distinct_orders(4, 6, seed=3) == orders


def test_distinct_orders_capped_by_factorial():
    assert len(distinct_orders(2, 6, seed=0)) == math.factorial(2)
    assert distinct_orders(0, 6, seed=0) == [()]


def test_ensembled_scores_are_mean_over_orders(sample_root, tmp_path, tiny_model):
    from flamingo_eval.data import load_class_names, load_split
    from flamingo_eval.prompts import build_request
    from flamingo_eval.registry import load_task
    from flamingo_eval.sample_data import write_sample
    from flamingo_eval.samplers import RandomSampler, draw_trial, stable_seed

    data_dir = write_sample("hateful_memes", sample_root / "hateful_memes_ensembles")
    run_dir = tmp_path / "run"
    assert main(
        ["--task", "hateful_memes", "--shots", "3", "--num-samples", "3", "--prompt-ensembles", "4",
         "--data-dir", str(data_dir), "--output-dir", str(run_dir)]
    ) == 0
    records = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["tasks"]["hateful_memes"]["protocol"]["prompt_ensembles"] == 4

    task = load_task("hateful_memes")
    class_names = load_class_names(task, data_dir)
    trial = draw_trial(42, load_split(task, "test_seen", data_dir), load_split(task, "train", data_dir), 3)
    sampler = RandomSampler(trial.query_set, 42)
    for record, example in zip(records, trial.eval_examples):
        demos = sampler.demos(example, 3)
        orders = distinct_orders(3, 4, stable_seed(42, example.id, "ensemble"))
        assert len(orders) == 4
        per_order = [
            tiny_model.rank([build_request(task.prompt, example, [demos[i] for i in order], 3)], class_names)[0]
            for order in orders
        ]
        expected = [sum(values) / len(per_order) for values in zip(*per_order)]
        assert record["sample_id"] == example.id
        assert record["class_scores"] == pytest.approx(expected, abs=1e-5)
        assert record["class_scores"] != pytest.approx(per_order[0], abs=1e-6)
