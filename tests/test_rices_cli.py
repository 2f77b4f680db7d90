"""`--sampler rices` end to end: retrieved demos in the predictions, cache reuse, metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flamingo_eval.cli import main

RICES_ARGS = ["--sampler", "rices", "--rices-encoder", "tiny-vit", "--rices-pretrained", "random"]


def run(okvqa_dir: Path, run_dir: Path, cache_dir: Path) -> int:
    return main(
        ["--task", "okvqa", "--shots", "0,4", "--num-samples", "8", "--model", "tiny",
         "--data-dir", str(okvqa_dir), "--output-dir", str(run_dir),
         "--feature-cache-dir", str(cache_dir), *RICES_ARGS]
    )


def test_rices_run_retrieves_most_similar_last(okvqa_dir, tmp_path):
    from flamingo_eval.data import load_split
    from flamingo_eval.registry import load_task
    from flamingo_eval.rices import load_or_build_features

    cache_dir = tmp_path / "features"
    assert run(okvqa_dir, tmp_path / "run", cache_dir) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    summary = (tmp_path / "run" / "summary.csv").read_text()
    assert "rices" in summary
    metadata = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert metadata["tasks"]["okvqa"]["protocol"]["sampler"] == "rices"
    assert metadata["tasks"]["okvqa"]["protocol"]["rices"]["encoder"] == "tiny-vit"

    task = load_task("okvqa")
    train = load_split(task, "train", okvqa_dir)
    val = load_split(task, "val", okvqa_dir)
    options = dict(encoder_name="tiny-vit", pretrained=None, cache_dir=cache_dir, progress=False)
    train_features = load_or_build_features(train, name="okvqa-train", **options)
    val_features = load_or_build_features(val, name="okvqa-val", **options)
    train_rows = {example.id: row for row, example in enumerate(train)}
    val_rows = {example.id: row for row, example in enumerate(val)}
    for record in (r for r in records if r["shots"] == 4):
        query = val_features[val_rows[record["sample_id"]]]
        similarities = [float(train_features[train_rows[demo]] @ query) for demo in record["demo_ids"]]
        assert all(a <= b + 1e-6 for a, b in zip(similarities, similarities[1:]))
        best = torch.topk(train_features @ query, 4).values.tolist()
        assert max(similarities) == pytest.approx(max(best), abs=1e-6)
        assert min(similarities) == pytest.approx(min(best), abs=1e-6)


def test_rices_second_run_reuses_cache(okvqa_dir, tmp_path, monkeypatch):
    from flamingo_eval.rices import encoder as encoder_module

    cache_dir = tmp_path / "features"
    assert run(okvqa_dir, tmp_path / "first", cache_dir) == 0
    calls = []
    original = encoder_module.ImageEncoder.encode

    def counting_encode(self, pixels):
        calls.append(len(pixels))
        return original(self, pixels)

    monkeypatch.setattr(encoder_module.ImageEncoder, "encode", counting_encode)
    assert run(okvqa_dir, tmp_path / "second", cache_dir) == 0
    assert calls == []
    first = (tmp_path / "first" / "predictions.jsonl").read_text()
    second = (tmp_path / "second" / "predictions.jsonl").read_text()
    assert first == second
