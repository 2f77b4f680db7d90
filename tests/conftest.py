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
