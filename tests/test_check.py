"""Tests of `flamingo-eval check`: exit codes, allowed drops, baseline updates and JUnit XML."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import yaml

from flamingo_eval import check
from flamingo_eval.baseline import load_baseline
from flamingo_eval.errors import InputError
from run_folder_builder import DEFAULT_PROTOCOL, write_run


def okvqa_scores(zero_shot: tuple[float, float] = (50.0, 60.0), four_shot_seed_1: dict | None = None) -> dict:
    """Ten items per trial; 0 shots: every item scores zero_shot[seed - 1]; 4 shots: 70."""
    scores = {
        (0, 1): {f"q{i}": zero_shot[0] for i in range(10)},
        (0, 2): {f"q{i}": zero_shot[1] for i in range(10)},
        (4, 1): {f"q{i}": 70.0 for i in range(10)},
        (4, 2): {f"q{i}": 70.0 for i in range(10)},
    }
    scores[(4, 1)].update(four_shot_seed_1 or {})
    return {"okvqa": scores}


@pytest.fixture
def baseline_run(tmp_path) -> Path:
    """0 shots: 55 +- 5 (trials 50 and 60); 4 shots: 70 +- 0."""
    return write_run(tmp_path / "baseline-run", okvqa_scores())


@pytest.fixture
def baseline_file(baseline_run, tmp_path) -> Path:
    path = tmp_path / "baseline.yaml"
    code = check.main([str(baseline_run), "--baseline", str(path), "--update-baseline", "--default-allowed-drop", "1"])
    assert code == 0
    return path


def test_baseline_written_from_run(baseline_file):
    baseline = load_baseline(baseline_file)
    values = {(entry.task, entry.shots, entry.metric): (entry.value, entry.std) for entry in baseline.entries}

    assert values == {("okvqa", 0, "vqa_accuracy"): (55.0, 5.0), ("okvqa", 4, "vqa_accuracy"): (70.0, 0.0)}
    assert baseline.protocol["seeds"] == [1, 2]
    assert baseline.protocol["tasks"]["okvqa"]["file_sha256"] == "sha-okvqa"
    assert baseline.default_allowed_drop.absolute == 1.0


def test_check_same_run_passes(baseline_run, baseline_file, capsys):
    assert check.main([str(baseline_run), "--baseline", str(baseline_file)]) == 0
    assert "all 2 scores within their allowed drop" in capsys.readouterr().out


def test_zero_drop_passes_same_run(tmp_path):
    # A mean of 200 / 3 is written to the baseline as 66.666667, above the run's 66.6666...
    run = write_run(tmp_path / "run", okvqa_scores(zero_shot=(200 / 3, 200 / 3)))
    path = tmp_path / "baseline.yaml"
    update = [str(run), "--baseline", str(path), "--update-baseline", "--default-allowed-drop", "0"]
    assert check.main(update) == 0
    assert load_baseline(path).entries[0].value == 66.666667

    assert check.main([str(run), "--baseline", str(path)]) == 0


def test_check_small_drop_passes(baseline_file, tmp_path):
    # One item 70 -> 65 at 4 shots, seed 1: trial 69.5, mean 69.75, a drop of 0.25 < 1.
    run = write_run(tmp_path / "small", okvqa_scores(four_shot_seed_1={"q0": 65.0}))
    assert check.main([str(run), "--baseline", str(baseline_file)]) == 0


def test_check_regression_exits_one(baseline_file, tmp_path, capsys):
    # Two items 70 -> 0 at 4 shots, seed 1: trial 56, mean 63, a drop of 7 > 1.
    run = write_run(tmp_path / "worse", okvqa_scores(four_shot_seed_1={"q0": 0.0, "q1": 0.0}))
    code = check.main([str(run), "--baseline", str(baseline_file)])
    printed = capsys.readouterr().out

    assert code == 1
    assert "1 of 2 scores regressed" in printed
    assert "| okvqa | 4 | random | vqa_accuracy | 70.00 | 1.00 (1 point) | 69.00 | 63.00 | -7.00 | regressed |" in printed
    assert "| okvqa | 0 |" not in printed


def test_allowed_drop_in_standard_deviations(baseline_file, tmp_path):
    # 0 shots: trials 45 and 55, mean 50, a drop of 5 from 55.
    run = write_run(tmp_path / "lower", okvqa_scores(zero_shot=(45.0, 55.0)))
    assert check.main([str(run), "--baseline", str(baseline_file)]) == 1

    document = yaml.safe_load(baseline_file.read_text())
    document["scores"][0]["allowed_drop"] = {"std": 2}  # 2 x std 5 = 10 points
    baseline_file.write_text(yaml.safe_dump(document))
    assert check.main([str(run), "--baseline", str(baseline_file)]) == 0

    document["scores"][0]["allowed_drop"] = {"std": 0.9}  # 0.9 x 5 = 4.5 points
    baseline_file.write_text(yaml.safe_dump(document))
    assert check.main([str(run), "--baseline", str(baseline_file)]) == 1

    document["scores"][0]["allowed_drop"] = {"std": 0.9, "absolute": 5.0}  # the larger, 5, applies
    baseline_file.write_text(yaml.safe_dump(document))
    assert check.main([str(run), "--baseline", str(baseline_file)]) == 0


@pytest.mark.parametrize(
    "change,field",
    [
        ({"seeds": [1, 3]}, "seeds"),
        ({"num_samples": 5}, "num_samples"),
        ({"protocol": {"okvqa": {**DEFAULT_PROTOCOL, "sampler": "rices"}}}, "protocol.sampler"),
        ({"protocol": {"okvqa": {**DEFAULT_PROTOCOL, "prompt": {**DEFAULT_PROTOCOL["prompt"], "query": "Q:{question} A:"}}}},
         "protocol.prompt.query"),
    ],
)
def test_protocol_mismatch_exits_two(baseline_file, tmp_path, capsys, change, field):
    scores = okvqa_scores()
    if "seeds" in change:
        scores = {"okvqa": {(shots, 3 if seed == 2 else seed): items for (shots, seed), items in scores["okvqa"].items()}}
    run = write_run(tmp_path / "other-protocol", scores, **change)
    code = check.main([str(run), "--baseline", str(baseline_file)])
    printed = capsys.readouterr().out

    assert code == 2
    assert f"task okvqa: {field}:" in printed
    assert "not compared" in printed


def test_task_file_hash_mismatch_exits_two(baseline_file, baseline_run, tmp_path, capsys):
    run = tmp_path / "edited-task"
    run.mkdir()
    for name in ("metadata.json", "predictions.jsonl", "trials.csv", "summary.csv"):
        (run / name).write_bytes((baseline_run / name).read_bytes())
    metadata = json.loads((run / "metadata.json").read_text())
    metadata["tasks"]["okvqa"]["file_sha256"] = "another-hash"
    (run / "metadata.json").write_text(json.dumps(metadata))

    assert check.main([str(run), "--baseline", str(baseline_file)]) == 2
    assert "file_sha256: baseline 'sha-okvqa', run 'another-hash'" in capsys.readouterr().out


def test_missing_task_exits_two(baseline_file, tmp_path):
    run = write_run(tmp_path / "coco-only", {"coco": okvqa_scores()["okvqa"]}, metrics={"coco": "cider"})
    assert check.main([str(run), "--baseline", str(baseline_file)]) == 2


def test_missing_score_is_a_regression(baseline_file, tmp_path):
    document = yaml.safe_load(baseline_file.read_text())
    extra = copy.deepcopy(document["scores"][0])
    extra["metric"] = "vqa_accuracy_official"
    document["scores"].append(extra)
    baseline_file.write_text(yaml.safe_dump(document))

    run = write_run(tmp_path / "same", okvqa_scores())
    assert check.main([str(run), "--baseline", str(baseline_file)]) == 1


def test_junit_xml_for_regression(baseline_file, tmp_path):
    run = write_run(tmp_path / "worse", okvqa_scores(four_shot_seed_1={"q0": 0.0, "q1": 0.0}))
    junit = tmp_path / "junit.xml"
    assert check.main([str(run), "--baseline", str(baseline_file), "--junit-xml", str(junit)]) == 1

    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "3"
    assert suite.get("failures") == "1"
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert set(cases) == {"protocol", "vqa_accuracy 0 shots (random)", "vqa_accuracy 4 shots (random)"}
    assert cases["protocol"].find("failure") is None
    assert cases["vqa_accuracy 0 shots (random)"].find("failure") is None
    failure = cases["vqa_accuracy 4 shots (random)"].find("failure")
    assert failure.get("type") == "regressed"
    assert "run 63.0000, baseline 70.0000, minimum 69.0000" in failure.get("message")
    assert cases["vqa_accuracy 4 shots (random)"].get("classname") == "flamingo_eval.check.okvqa"


def test_junit_xml_for_pass_and_mismatch(baseline_run, baseline_file, tmp_path):
    junit = tmp_path / "pass.xml"
    assert check.main([str(baseline_run), "--baseline", str(baseline_file), "--junit-xml", str(junit)]) == 0
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "0"
    assert suite.find("testcase/failure") is None

    other = write_run(tmp_path / "other", okvqa_scores(), num_samples=5)
    junit = tmp_path / "mismatch.xml"
    assert check.main([str(other), "--baseline", str(baseline_file), "--junit-xml", str(junit)]) == 2
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    protocol_case = suite.find("testcase[@name='protocol']")
    assert protocol_case.find("failure").get("type") == "protocol_mismatch"
    assert "num_samples" in protocol_case.find("failure").text
    assert suite.get("skipped") == "2"
    assert len(suite.findall("testcase/skipped")) == 2


def test_update_keeps_allowed_drops(baseline_file, tmp_path):
    document = yaml.safe_load(baseline_file.read_text())
    document["scores"][1]["allowed_drop"] = {"std": 3.0}
    document["default_allowed_drop"] = {"absolute": 2.5}
    baseline_file.write_text(yaml.safe_dump(document))

    improved = write_run(tmp_path / "improved", okvqa_scores(zero_shot=(80.0, 80.0)), seeds=[1, 2])
    assert check.main([str(improved), "--baseline", str(baseline_file), "--update-baseline"]) == 0

    baseline = load_baseline(baseline_file)
    entries = {entry.shots: entry for entry in baseline.entries}
    assert entries[0].value == 80.0
    assert entries[0].allowed_drop is None
    assert entries[4].allowed_drop.std == 3.0
    assert baseline.default_allowed_drop.absolute == 2.5
    assert baseline.source_run["path"] == str(improved)


def test_json_baseline(baseline_run, tmp_path):
    path = tmp_path / "baseline.json"
    assert check.main([str(baseline_run), "--baseline", str(path), "--update-baseline",
                       "--default-allowed-drop-std", "2"]) == 0
    document = json.loads(path.read_text())
    assert document["default_allowed_drop"] == {"std": 2.0}
    assert check.main([str(baseline_run), "--baseline", str(path)]) == 0


def test_invalid_baseline_names_field(baseline_run, baseline_file):
    document = yaml.safe_load(baseline_file.read_text())
    document["scores"][1]["allowed_drop"] = {"points": 2}
    baseline_file.write_text(yaml.safe_dump(document))
    with pytest.raises(InputError, match=r"scores\[1\]\.allowed_drop: allowed drop must be"):
        check.main([str(baseline_run), "--baseline", str(baseline_file)])

    document["scores"][1] = {"task": "okvqa", "shots": 4, "sampler": "random", "metric": "vqa_accuracy"}
    baseline_file.write_text(yaml.safe_dump(document))
    with pytest.raises(InputError, match=r"scores\[1\]: missing field 'value'"):
        check.main([str(baseline_run), "--baseline", str(baseline_file)])


def test_missing_baseline_file(baseline_run, tmp_path):
    with pytest.raises(InputError, match="baseline file not found; create one with --update-baseline"):
        check.main([str(baseline_run), "--baseline", str(tmp_path / "none.yaml")])


def test_incomplete_run_rejected(baseline_file, tmp_path):
    run = write_run(tmp_path / "running", okvqa_scores(), status="running")
    with pytest.raises(InputError, match="status is 'running'"):
        check.main([str(run), "--baseline", str(baseline_file)])
