"""Users' own models (`--model package.module:factory`) and the Python API `evaluate_model`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flamingo_eval.api import evaluate_model
from flamingo_eval.cli import main
from flamingo_eval.errors import InputError
from flamingo_eval.models import EvalModel, load_model

FACTORY_MODULE = '''
from flamingo_eval.models import EvalModel
from flamingo_eval.models.flamingo_adapter import FlamingoModel
from flamingo_eval.models.tiny import build_tiny

CALLS = []


def build(device: str, precision: str) -> EvalModel:
    CALLS.append((device, precision))
    model, image_processor, tokenizer = build_tiny()
    return FlamingoModel(model, image_processor, tokenizer, name="my-tiny", device=device,
                         identity={"source": "my_models.build"})


def build_without_arguments():
    return build("cpu", "fp32")


def not_a_model(device):
    return "a string"
'''


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_models"
    import sys

    sys.modules.pop("my_models", None)


def cli_run(okvqa_dir, run_dir, model: str) -> pd.DataFrame:
    exit_code = main([
        "--task", "okvqa", "--shots", "0,2", "--num-samples", "6", "--batch-size", "4",
        "--model", model, "--data-dir", str(okvqa_dir), "--output-dir", str(run_dir),
    ])
    assert exit_code == 0
    return pd.read_csv(run_dir / "summary.csv")


def test_factory_model_runs_task(factory_module, okvqa_dir, tmp_path):
    summary = cli_run(okvqa_dir, tmp_path / "run", f"{factory_module}:build")
    assert summary["shots"].tolist() == [0, 2]
    assert summary["num_samples"].tolist() == [6, 6]
    metadata = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert metadata["model"]["name"] == "my-tiny"
    assert metadata["model"]["source"] == "my_models.build"
    import my_models

    assert my_models.CALLS == [("cpu", "fp32")]


def test_factory_from_file(tmp_path):
    path = tmp_path / "file_models.py"
    path.write_text(FACTORY_MODULE)
    model = load_model(f"{path}:build_without_arguments")
    assert model.name == "my-tiny"


def test_factory_errors(factory_module):
    with pytest.raises(InputError, match="must return an instance"):
        load_model(f"{factory_module}:not_a_model")
    with pytest.raises(InputError, match="has no attribute 'missing'"):
        load_model(f"{factory_module}:missing")
    with pytest.raises(InputError, match="module 'no_such_module' not found"):
        load_model("no_such_module:build")
    with pytest.raises(InputError, match="takes no --checkpoint"):
        load_model(f"{factory_module}:build", checkpoint="x.pt")


def test_api_equals_cli_summary(okvqa_dir, tmp_path):
    cli_summary = cli_run(okvqa_dir, tmp_path / "cli", "tiny")
    api_summary = evaluate_model(
        load_model("tiny"),
        tasks=["okvqa"],
        shots=[0, 2],
        num_samples=6,
        batch_size=4,
        data_dir=okvqa_dir,
        output_dir=tmp_path / "api",
    )
    assert isinstance(api_summary, pd.DataFrame)
    assert api_summary.attrs["run_path"] == str(tmp_path / "api")
    pd.testing.assert_frame_equal(api_summary.reset_index(drop=True), cli_summary, check_dtype=False)
    api_files = sorted(path.name for path in (tmp_path / "api").iterdir())
    cli_files = sorted(path.name for path in (tmp_path / "cli").iterdir())
    assert api_files == cli_files
    assert "summary.csv" in api_files
    api_records = [json.loads(line) for line in (tmp_path / "api" / "predictions.jsonl").read_text().splitlines()]
    cli_records = [json.loads(line) for line in (tmp_path / "cli" / "predictions.jsonl").read_text().splitlines()]
    assert [r["raw_output"] for r in api_records] == [r["raw_output"] for r in cli_records]


class RecordingModel(EvalModel):
    """Delegates to the tiny model and records the training flag its module had at each call."""

    def __init__(self, inner):
        self.inner = inner
        self.model = inner.model
        self.name = "recording"
        self.training_flags = []

    def generate(self, requests, **settings):
        self.training_flags.append(self.model.training)
        return self.inner.generate(requests, **settings)

    def rank(self, requests, class_names):
        return self.inner.rank(requests, class_names)

    def identity(self):
        return self.inner.identity()


def test_api_restores_training_mode(okvqa_dir, tmp_path):
    model = RecordingModel(load_model("tiny"))
    model.model.train()
    evaluate_model(model, tasks=["okvqa"], shots=[0], num_samples=2, data_dir=okvqa_dir, output_dir=tmp_path / "run")
    assert model.training_flags and not any(model.training_flags)
    assert model.model.training


def test_api_rejects_bad_arguments(okvqa_dir):
    with pytest.raises(InputError, match="no tasks"):
        evaluate_model("tiny", tasks=[])
    with pytest.raises(InputError, match="batch_size 0"):
        evaluate_model("tiny", tasks=["okvqa"], batch_size=0, data_dir=okvqa_dir)
    with pytest.raises(InputError, match="pass an EvalModel"):
        evaluate_model(object(), tasks=["okvqa"], data_dir=okvqa_dir)
