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


def write_task_variant(tmp_path: Path, replace: tuple[str, str], name: str = "variant") -> Path:
    from flamingo_eval.registry import task_files

    text = task_files()["okvqa"].read_text()
    assert replace[0] in text
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(replace[0], replace[1]))
    return path


@pytest.mark.parametrize(
    "replace, fragment",
    [
        (("num_beams: 3", "num_beams: three"), "generation.num_beams"),
        (("num_beams: 3", "num_beams: 0"), "generation.num_beams"),
        (("max_new_tokens: 5", "max_new_tokens: -5"), "generation.max_new_tokens"),
        (('query: "<image>Question:{question} Short answer:"', 'query: "<image>Question:{question} {Short answer:"'), "prompt.query"),
        (("prompt:", "promtp:"), "unknown field 'promtp'"),
    ],
)
def test_invalid_task_file_fields(replace, fragment, okvqa_dir, tmp_path, capsys):
    task_file = write_task_variant(tmp_path, replace)
    code, error = run_cli(
        ["--task", str(task_file), "--shots", "0", "--data-dir", str(okvqa_dir),
         "--output-dir", str(tmp_path / "run")],
        capsys,
    )
    assert code == 2
    assert_one_line(error, str(task_file), fragment)
    assert not (tmp_path / "run").exists()


def test_duplicate_task_names(okvqa_dir, tmp_path, capsys):
    variant = write_task_variant(tmp_path, ("Short answer:", "Answer:"))
    code, error = run_cli(["--task", "okvqa", "--task", str(variant), "--data-dir", str(okvqa_dir)], capsys)
    assert code == 2
    assert_one_line(error, "'okvqa' twice")


@pytest.mark.parametrize(
    "option, value",
    [
        ("--zero-shot-text-demos", "-1"),
        ("--query-set-size", "0"),
        ("--prompt-ensembles", "0"),
        ("--image-workers", "-1"),
    ],
)
def test_invalid_protocol_numbers(option, value, okvqa_dir, capsys):
    code, error = run_cli(["--task", "okvqa", option, value, "--data-dir", str(okvqa_dir)], capsys)
    assert code == 2
    assert_one_line(error, option)


def test_query_set_smaller_than_shots(okvqa_dir, tmp_path, capsys):
    code, error = run_cli(
        ["--task", "okvqa", "--shots", "4", "--query-set-size", "3", "--num-samples", "2",
         "--data-dir", str(okvqa_dir), "--output-dir", str(tmp_path / "run")],
        capsys,
    )
    assert code == 2
    assert_one_line(error, "the query set (3 of")
    assert not (tmp_path / "run").exists()


def test_output_dir_with_other_files(okvqa_dir, tmp_path, capsys):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("not a run")
    code, error = run_cli(["--task", "okvqa", "--data-dir", str(okvqa_dir), "--output-dir", str(occupied)], capsys)
    assert code == 2
    assert_one_line(error, "non-empty folder")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    code, error = run_cli(["--task", "okvqa", "--data-dir", str(okvqa_dir), "--output-dir", str(a_file)], capsys)
    assert code == 2
    assert_one_line(error, "is a file")


def test_keyboard_interrupt_one_line(monkeypatch, capsys):
    from flamingo_eval import cli

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "command_run", interrupted)
    code = cli.main(["--task", "okvqa"])
    error = capsys.readouterr().err.strip()
    assert code == 130
    assert "\n" not in error
    assert "resumes" in error
