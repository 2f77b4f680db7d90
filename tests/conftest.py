"""Fixtures shared by the test suite: the tiny model, generated sample data, NLTK data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_NLTK_DATA = REPO_ROOT.parent / "shared" / "data" / "nltk_data"

# OK-VQA stemming needs NLTK's tagger and WordNet; use the copy beside the checkout when present.
if SHARED_NLTK_DATA.is_dir() and "NLTK_DATA" not in os.environ:
    os.environ["NLTK_DATA"] = str(SHARED_NLTK_DATA)


@pytest.fixture(scope="session")
def tiny_model():
    from flamingo_eval.models import load_model

    return load_model("tiny")


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    """A folder with one generated sample per task, written once per test session."""
    return tmp_path_factory.mktemp("sample_data")


@pytest.fixture(scope="session")
def okvqa_dir(sample_root) -> Path:
    from flamingo_eval.sample_data import write_sample

    return write_sample("okvqa", sample_root / "okvqa", seed=0)


from task_run_settings import TINY_RUN_SAMPLES  # noqa: E402  (see that module for why)


@pytest.fixture(scope="session")
def task_sample(sample_root):
    """Return a function that writes a built-in task's sample once per session and returns it."""
    from flamingo_eval.sample_data import write_sample

    def sample(task_name: str) -> Path:
        folder = sample_root / task_name
        if not folder.is_dir():
            write_sample(task_name, folder, seed=0)
        return folder

    return sample


@pytest.fixture(scope="session")
def tiny_task_run(tiny_model, task_sample, tmp_path_factory):
    """Return a function that evaluates a built-in task on its sample files and the tiny model.

    Each task runs once per session with 0 and 4 shots, trial seed 42 and TINY_RUN_SAMPLES
    items, the equivalent of `flamingo-eval --task T --shots 0,4 --model tiny --num-samples 8`.
    The function returns the run folder.
    """
    from flamingo_eval.evaluate import evaluate
    from flamingo_eval.registry import load_task
    from flamingo_eval.runner import RunOptions

    runs: dict[str, Path] = {}

    def run(task_name: str) -> Path:
        if task_name not in runs:
            output_dir = tmp_path_factory.mktemp("tiny_runs") / task_name
            evaluate(
                tiny_model,
                [load_task(task_name)],
                RunOptions(shots=[0, 4], num_samples=TINY_RUN_SAMPLES),
                data_root=task_sample(task_name),
                source="files",
                output_dir=output_dir,
                command=["flamingo-eval", "--task", task_name, "--shots", "0,4", "--model", "tiny"],
            )
            runs[task_name] = output_dir
        return runs[task_name]

    return run
