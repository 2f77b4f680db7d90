"""Bad input stops the command with a one-line error before any model work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flamingo_eval.cli import main


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    error = capsys.readouterr().err.strip()
    return code, error


@pytest.fixture
def broken_copy(okvqa_dir, tmp_path) -> Path:
    target = tmp_path / "okvqa"
    shutil.copytree(okvqa_dir, target)
    return target


def run_okvqa(data_dir: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    return run_cli(
        ["--task", "okvqa", "--shots", "0", "--data-dir", str(data_dir),
         "--output-dir", str(tmp_path / "run")],
        capsys,
    )


def assert_one_line(error: str, *fragments: str) -> None:
    assert error.startswith("flamingo-eval: error: ")
    assert "\n" not in error
    for fragment in fragments:
        assert fragment in error, (fragment, error)


def test_unknown_task(capsys):
    code, error = run_cli(["--task", "nonexistent_task"], capsys)
    assert code == 2
    assert_one_line(error, "unknown task 'nonexistent_task'", "okvqa")


@pytest.mark.parametrize("shots", ["0,four", "-1", "4,4", ""])
def test_bad_shot_list(shots, capsys):
    code, error = run_cli(["--task", "okvqa", "--shots", shots], capsys)
    assert code == 2
    assert_one_line(error, "--shots")


def test_missing_data_folder(tmp_path, capsys):
    code, error = run_cli(["--task", "okvqa", "--data-dir", str(tmp_path / "absent")], capsys)
    assert code == 2
    assert_one_line(error, "data folder", "absent", "sample-data okvqa")


def test_missing_annotation_file(broken_copy, tmp_path, capsys):
    (broken_copy / "mscoco_val2014_annotations.json").unlink()
    code, error = run_okvqa(broken_copy, tmp_path, capsys)
    assert code == 2
    assert_one_line(error, "mscoco_val2014_annotations.json")
    assert not (tmp_path / "run").exists()


def test_question_without_annotation(broken_copy, tmp_path, capsys):
    path = broken_copy / "mscoco_val2014_annotations.json"
    content = json.loads(path.read_text())
    dropped = content["annotations"].pop(3)["question_id"]
    path.write_text(json.dumps(content))
    code, error = run_okvqa(broken_copy, tmp_path, capsys)
    assert code == 2
    assert_one_line(error, str(dropped), "mscoco_val2014_annotations.json")
    assert not (tmp_path / "run").exists()


def test_duplicate_question_id(broken_copy, tmp_path, capsys):
    path = broken_copy / "OpenEnded_mscoco_val2014_questions.json"
    content = json.loads(path.read_text())
    duplicate = dict(content["questions"][0])
    content["questions"].append(duplicate)
    path.write_text(json.dumps(content))
    code, error = run_okvqa(broken_copy, tmp_path, capsys)
    assert code == 2
    assert_one_line(error, str(duplicate["question_id"]), "OpenEnded_mscoco_val2014_questions.json")


def test_missing_field(broken_copy, tmp_path, capsys):
    path = broken_copy / "OpenEnded_mscoco_val2014_questions.json"
    content = json.loads(path.read_text())
    del content["questions"][2]["question"]
    path.write_text(json.dumps(content))
    code, error = run_okvqa(broken_copy, tmp_path, capsys)
    assert code == 2
    assert_one_line(error, "question", "OpenEnded_mscoco_val2014_questions.json")


def test_missing_image(broken_copy, tmp_path, capsys):
    image = sorted((broken_copy / "val2014").iterdir())[0]
    image.unlink()
    code, error = run_okvqa(broken_copy, tmp_path, capsys)
    assert code == 2
    assert_one_line(error, image.name)
    assert not (tmp_path / "run").exists()


def test_missing_nltk_data(okvqa_dir, tmp_path, capsys, monkeypatch):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "no_nltk_data")])
    from flamingo_eval.metrics import okvqa_stemming

    if hasattr(okvqa_stemming, "_lemmatizer") and hasattr(okvqa_stemming._lemmatizer, "cache_clear"):
        okvqa_stemming._lemmatizer.cache_clear()
    code, error = run_okvqa(okvqa_dir, tmp_path, capsys)
    assert code == 2
    assert_one_line(error, "nltk.download")
