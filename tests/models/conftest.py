"""Fixtures of the model loading tests: offline hub settings, images, saved tiny models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from builders import save_tiny_flamingo, write_images  # noqa: E402


@pytest.fixture
def hub_offline(monkeypatch):
    """HF_HUB_OFFLINE=1 for code that reads the variable or huggingface_hub's parsed constant."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def model_images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("model_images"))


@pytest.fixture(scope="session")
def saved_mpt(tmp_path_factory):
    """A tiny MPT Flamingo with cross-attention every 4 layers, as openflamingo-9b."""
    return save_tiny_flamingo("mpt", tmp_path_factory.mktemp("mpt"), cross_attn_every_n_layers=4)
