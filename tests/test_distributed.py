"""Data-parallel runs with torchrun (gloo on the CPU), resume after SIGKILL, and rank faults."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flamingo_eval.cli import main

# 10 items: not a multiple of 3 or 4, so shards differ in size.
NUM_SAMPLES = "10"
RUN_ARGS = ["--task", "okvqa", "--shots", "0,4", "--num-samples", NUM_SAMPLES, "--model", "tiny"]
SUBPROCESS_TIMEOUT = 300


def torchrun(world_size: int, args: list[str], timeout: float = SUBPROCESS_TIMEOUT) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world_size),
        "--master_port", str(29500 + world_size + os.getpid() % 1000),
        "-m", "flamingo_eval", *args,
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def comparable(records: list[dict]) -> list[tuple]:
    """What must not depend on scale: ids, demos, prompts, outputs and per-sample scores."""
    return [
        (r["task"], r["shots"], r["seed"], r["sample_id"], tuple(r["demo_ids"]), r["prompt"],
         r["raw_output"], r["prediction"], json.dumps(r["scores"], sort_keys=True))
        for r in records
    ]


@pytest.fixture(scope="module")
def single_process_run(okvqa_dir, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("single") / "run"
    assert main([*RUN_ARGS, "--data-dir", str(okvqa_dir), "--output-dir", str(run_dir), "--batch-size", "4"]) == 0
    return run_dir


@pytest.mark.parametrize("world_size", [2, 3])
def test_world_sizes_identical(world_size, single_process_run, okvqa_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = torchrun(world_size, [*RUN_ARGS, "--data-dir", str(okvqa_dir), "--output-dir", str(run_dir)])
    assert result.returncode == 0, result.stderr[-3000:]
    expected = read_jsonl(single_process_run / "predictions.jsonl")
    produced = read_jsonl(run_dir / "predictions.jsonl")
    assert comparable(produced) == comparable(expected)
    assert (run_dir / "summary.csv").read_text() == (single_process_run / "summary.csv").read_text()
    journals = sorted(run_dir.glob("journal.rank*.jsonl"))
    assert len(journals) == world_size
    journal_keys = [
        (r["shots"], r["sample_id"]) for path in journals for r in read_jsonl(path)
    ]
    assert len(journal_keys) == len(set(journal_keys)) == 2 * int(NUM_SAMPLES)


@pytest.mark.parametrize("batch_size", ["1", "16"])
def test_batch_sizes_identical(batch_size, single_process_run, okvqa_dir, tmp_path):
    run_dir = tmp_path / "run"
    assert main([*RUN_ARGS, "--data-dir", str(okvqa_dir), "--output-dir", str(run_dir), "--batch-size", batch_size]) == 0
    expected = read_jsonl(single_process_run / "predictions.jsonl")
    assert comparable(read_jsonl(run_dir / "predictions.jsonl")) == comparable(expected)
    assert (run_dir / "summary.csv").read_text() == (single_process_run / "summary.csv").read_text()


def test_resume_after_sigkill(single_process_run, okvqa_dir, tmp_path):
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "flamingo_eval", *RUN_ARGS, "--data-dir", str(okvqa_dir),
        "--output-dir", str(run_dir), "--batch-size", "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = run_dir / "journal.rank0.jsonl"
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    while time.monotonic() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) >= 6:
            break
        if process.poll() is not None:
            pytest.fail("the run finished before it could be killed")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "summary.csv").exists()
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "running"
    finished_before = len(read_jsonl(journal))
    assert 6 <= finished_before < 2 * int(NUM_SAMPLES)
    # A crash in the middle of a write leaves a truncated line; resume must discard it.
    with journal.open("a") as stream:
        stream.write('{"task": "okvqa", "shots": 4, "sample_id": "trunc')

    result = subprocess.run(command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_jsonl(run_dir / "predictions.jsonl")
    assert comparable(records) == comparable(read_jsonl(single_process_run / "predictions.jsonl"))
    assert (run_dir / "summary.csv").read_text() == (single_process_run / "summary.csv").read_text()
    journal_records = read_jsonl(journal)
    keys = [(r["shots"], r["sample_id"]) for r in journal_records]
    assert len(keys) == len(set(keys)) == 2 * int(NUM_SAMPLES)
    assert json.loads((run_dir / "metadata.json").read_text())["status"] == "complete"


def test_resume_rejects_other_configuration(single_process_run, okvqa_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(single_process_run, run_dir)
    code = main([*RUN_ARGS[:-4], "--num-samples", "9", "--model", "tiny", "--data-dir", str(okvqa_dir), "--resume", str(run_dir)])
    error = capsys.readouterr().err
    assert code == 2
    assert "num_samples" in error
    assert "stored 10, now 9" in error


def test_rank_failure_stops_run(okvqa_dir, tmp_path):
    from flamingo_eval.data import load_split
    from flamingo_eval.registry import load_task
    from flamingo_eval.samplers import draw_trial

    data_dir = tmp_path / "okvqa"
    shutil.copytree(okvqa_dir, data_dir)
    task = load_task("okvqa")
    trial = draw_trial(
        42, load_split(task, "val", data_dir), load_split(task, "train", data_dir), num_samples=10
    )
    rank0_images = {item.image.path for item in trial.eval_examples[0::2]}
    rank1_images = {item.image.path for item in trial.eval_examples[1::2]} - rank0_images
    assert rank1_images
    for path in rank1_images:
        path.write_bytes(b"not a jpeg")

    run_dir = tmp_path / "run"
    started = time.monotonic()
    result = torchrun(
        2,
        ["--task", "okvqa", "--shots", "0", "--num-samples", "10", "--batch-size", "1",
         "--data-dir", str(data_dir), "--output-dir", str(run_dir), "--dist-timeout", "2"],
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode != 0
    assert time.monotonic() - started < SUBPROCESS_TIMEOUT
    assert "flamingo-eval: error (rank 1)" in result.stderr
    assert "cannot read image" in result.stderr
    assert read_jsonl(run_dir / "journal.rank0.jsonl")
    assert not (run_dir / "summary.csv").exists()
