"""A ninth benchmark is one task file: `--task path/to/file.yaml` runs it with no code change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from flamingo_eval.cli import main
from flamingo_eval.registry import load_task, task_files

DEMO_TEMPLATE = "<image>Q: {question} A:{answer}<|endofchunk|>"
QUERY_TEMPLATE = "<image>Q: {question} A:"


@pytest.fixture
def shared_tiny_model(tiny_model, monkeypatch):
    """Make the command line's model loading return the session's tiny model."""
    monkeypatch.setattr("flamingo_eval.models.load_model", lambda *args, **kwargs: tiny_model)
    return tiny_model


def write_custom_task(folder: Path) -> Path:
    """Write an OK-VQA variant with its own name and prompt, and OK-VQA's loader and metric."""
    raw = yaml.safe_load(task_files()["okvqa"].read_text())
    raw["name"] = "okvqa_qa"
    raw["description"] = "OK-VQA val with a Q:/A: prompt"
    raw["prompt"] = {"demo": DEMO_TEMPLATE, "query": QUERY_TEMPLATE, "separator": "\n"}
    path = folder / "okvqa_qa.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def sample_questions(okvqa_dir: Path) -> dict[str, tuple[str, str]]:
    """Return (question, first annotator's answer) by question id, read from the sample files."""
    task = load_task("okvqa")
    questions, answers = {}, {}
    for split in task.data.splits.values():
        for question in json.loads((okvqa_dir / split["questions"]).read_text())["questions"]:
            questions[str(question["question_id"])] = question["question"]
        for annotation in json.loads((okvqa_dir / split["annotations"]).read_text())["annotations"]:
            answers[str(annotation["question_id"])] = annotation["answers"][0]["answer"]
    return {
        question_id: (questions[question_id], answers[question_id]) for question_id in questions
    }


@pytest.fixture(scope="module")
def custom_task_file(tmp_path_factory) -> Path:
    return write_custom_task(tmp_path_factory.mktemp("custom_task"))


@pytest.fixture
def custom_run(custom_task_file, okvqa_dir, shared_tiny_model, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    exit_code = main(
        ["--task", str(custom_task_file), "--shots", "0,4", "--model", "tiny", "--num-samples", "4",
         "--data-dir", str(okvqa_dir), "--output-dir", str(run_dir)]
    )
    assert exit_code == 0
    return run_dir


def test_custom_task_runs_with_its_prompt(custom_run, okvqa_dir):
    records = read_jsonl(custom_run / "predictions.jsonl")
    assert len(records) == 8
    texts = sample_questions(okvqa_dir)
    for record in records:
        assert record["task"] == "okvqa_qa"
        assert "Short answer:" not in record["prompt"]
        demos = "".join(
            DEMO_TEMPLATE.format(question=texts[demo][0], answer=texts[demo][1]) + "\n"
            for demo in record["demo_ids"]
        )
        if record["shots"] == 0:
            demos = demos.replace("<image>", "")
        expected = demos + QUERY_TEMPLATE.format(question=texts[record["sample_id"]][0])
        assert record["prompt"] == expected


def test_custom_task_is_scored_and_recorded(custom_run, custom_task_file):
    metadata = json.loads((custom_run / "metadata.json").read_text())
    assert metadata["status"] == "complete"
    assert metadata["task_files"] == {"okvqa_qa": str(custom_task_file.resolve())}
    assert metadata["tasks"]["okvqa_qa"]["protocol"]["prompt"]["demo"] == DEMO_TEMPLATE
    summary = (custom_run / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("task,shots,sampler,metric,mean")
    assert [line.split(",")[:4] for line in summary[1:]] == [
        ["okvqa_qa", "0", "random", "vqa_accuracy"],
        ["okvqa_qa", "4", "random", "vqa_accuracy"],
    ]


def test_custom_task_file_is_not_registered(custom_task_file):
    assert "okvqa_qa" not in task_files()
    assert load_task(str(custom_task_file)).name == "okvqa_qa"


@pytest.mark.parametrize("argv", (["--list-tasks"], ["list-tasks"]))
def test_list_tasks_shows_metric_and_source(argv, capsys):
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["task", "kind", "metrics", "data", "source", "description"]
    rows = {line.split()[0]: line for line in lines[1:]}
    expected = {
        "coco": ("cider", "karpathy"),
        "flickr30k": ("cider", "karpathy"),
        "hateful_memes": ("roc_auc", "hateful_memes"),
        "imagenet": ("top1, top5", "imagefolder"),
        "okvqa": ("vqa_accuracy", "vqa"),
        "textvqa": ("vqa_accuracy", "vqa"),
        "vizwiz": ("vqa_accuracy", "vqa"),
        "vqav2": ("vqa_accuracy", "vqa"),
    }
    assert sorted(rows) == sorted(expected)
    for name, (metrics, loader) in expected.items():
        assert f" {metrics} " in rows[name], name
        assert f" {loader} | hf " in rows[name], name
