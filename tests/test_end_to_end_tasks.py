"""Every built-in task end to end on the tiny model, rescored with the reference implementations.

Each task's summary must equal its written predictions rescored by OpenFlamingo's VQA metric
(VQA tasks), pycocoevalcap's CIDEr called as OpenFlamingo's coco_metric calls it (captioning)
or scikit-learn and numpy (ranking tasks). The tiny model's VQA answers all score 0, so derived
predictions (the annotators' own answers) check the metrics away from 0 as well. The VQAv2 and
VizWiz test-dev splits have no answers and produce EvalAI submission files instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from task_run_settings import TINY_RUN_SAMPLES
from flamingo_eval.metrics import METRICS
from flamingo_eval.registry import load_task, parse_task_file, task_files
from flamingo_eval.submission import write_submission

ALL_TASKS = (
    "okvqa", "vqav2", "textvqa", "vizwiz", "coco", "flickr30k", "imagenet", "hateful_memes",
)
VQA_TASKS = ("okvqa", "vqav2", "textvqa", "vizwiz")
CAPTION_TASKS = ("coco", "flickr30k")
SHOTS = (0, 4)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def shot_records(run_dir: Path, shots: int) -> list[dict]:
    records = read_jsonl(run_dir / "predictions.jsonl")
    return [record for record in records if record["shots"] == shots]


def summary_value(run_dir: Path, shots: int, metric: str) -> float:
    summary = pd.read_csv(run_dir / "summary.csv")
    row = summary[(summary["shots"] == shots) & (summary["metric"] == metric)]
    assert len(row) == 1, f"no single summary row for {shots} shots, {metric}"
    return float(row["mean"].iloc[0])


def eval_split_files(task_name: str, sample_dir: Path) -> dict[str, Path]:
    task = load_task(task_name)
    settings = task.data.splits[task.data.eval_split]
    names = ("questions", "annotations", "file")
    return {key: sample_dir / value for key, value in settings.items() if key in names}


# --- every task -------------------------------------------------------------------------------


def test_builtin_tasks_are_the_eight_benchmarks():
    assert sorted(task_files()) == sorted(ALL_TASKS)


@pytest.mark.parametrize("task_name", ALL_TASKS)
def test_run_completes(task_name, tiny_task_run):
    run_dir = tiny_task_run(task_name)
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "complete"

    task = load_task(task_name)
    summary = pd.read_csv(run_dir / "summary.csv")
    assert sorted(set(summary["shots"])) == list(SHOTS)
    assert sorted(set(summary["metric"])) == sorted(task.metric_names)
    assert (summary["num_samples"] == TINY_RUN_SAMPLES).all()
    assert summary["mean"].notna().all()

    records = read_jsonl(run_dir / "predictions.jsonl")
    assert len(records) == TINY_RUN_SAMPLES * len(SHOTS)
    for record in records:
        assert record["task"] == task_name
        assert len(record["demo_ids"]) == (2 if record["shots"] == 0 else record["shots"])
        assert record["prompt"].count("<image>") == (1 if record["shots"] == 0 else 5)


# --- VQA tasks: OpenFlamingo's compute_vqa_accuracy -------------------------------------------


def question_ids_by_string(questions_path: Path) -> dict[str, int | str]:
    """Map str(question_id) to the question id as the questions file spells it."""
    questions = json.loads(questions_path.read_text())["questions"]
    return {str(question["question_id"]): question["question_id"] for question in questions}


def write_results(path: Path, predictions: dict[str, str], questions_path: Path) -> Path:
    ids = question_ids_by_string(questions_path)
    results = [
        {"question_id": ids[sample_id], "answer": answer}
        for sample_id, answer in predictions.items()
    ]
    path.write_text(json.dumps(results))
    return path


def openflamingo_vqa(results_path: Path, files: dict[str, Path]) -> tuple[float, dict]:
    """Score a results file with OpenFlamingo's VQA and VQAEval classes.

    Returns the overall accuracy, as compute_vqa_accuracy returns it, and the per-question
    accuracies (evalQA) keyed by str(question_id).
    """
    from open_flamingo.eval.vqa_metric import VQA, VQAEval

    vqa = VQA(str(files["annotations"]), str(files["questions"]))
    results = vqa.loadRes(str(results_path), str(files["questions"]))
    evaluation = VQAEval(vqa, results, n=2)
    evaluation.evaluate()
    per_question = {str(question_id): value for question_id, value in evaluation.evalQA.items()}
    return evaluation.accuracy["overall"], per_question


@pytest.mark.parametrize("task_name", VQA_TASKS)
@pytest.mark.parametrize("shots", SHOTS)
def test_vqa_summary_equals_compute_vqa_accuracy(
    task_name, shots, tiny_task_run, task_sample, tmp_path
):
    from open_flamingo.eval.vqa_metric import compute_vqa_accuracy

    run_dir = tiny_task_run(task_name)
    files = eval_split_files(task_name, task_sample(task_name))
    records = shot_records(run_dir, shots)
    predictions = {record["sample_id"]: record["prediction"] for record in records}
    results_path = write_results(tmp_path / "results.json", predictions, files["questions"])

    reference = compute_vqa_accuracy(
        str(results_path), str(files["questions"]), str(files["annotations"])
    )
    assert summary_value(run_dir, shots, "vqa_accuracy") == pytest.approx(reference, abs=1e-9)


def derived_answers(records: list[dict]) -> dict[str, str]:
    """Predictions from the annotators' answers: the i-th record gets answer i mod 10.

    Every fifth record gets an upper-cased answer with a trailing period and every seventh an
    empty string, so the scores mix full, partial and zero credit.
    """
    predictions = {}
    for index, record in enumerate(records):
        answer = record["target"][index % len(record["target"])]["answer"]
        if index % 7 == 6:
            answer = ""
        elif index % 5 == 4:
            answer = answer.upper() + "."
        predictions[record["sample_id"]] = answer
    return predictions


@pytest.mark.parametrize("task_name", VQA_TASKS)
def test_vqa_metric_agrees_on_derived_answers(task_name, tiny_task_run, task_sample, tmp_path):
    run_dir = tiny_task_run(task_name)
    files = eval_split_files(task_name, task_sample(task_name))
    records = shot_records(run_dir, 0)
    predictions = derived_answers(records)
    for record in records:
        record["prediction"] = predictions[record["sample_id"]]

    metric = load_task(task_name).metrics[0]
    options = {key: value for key, value in metric.items() if key != "name"}
    result = METRICS["vqa_accuracy"](records, options)
    results_path = write_results(tmp_path / "results.json", predictions, files["questions"])
    reference_overall, reference_per_question = openflamingo_vqa(results_path, files)

    assert result.value > 0
    assert result.value == pytest.approx(reference_overall, abs=1e-9)
    assert result.per_sample == pytest.approx(reference_per_question, abs=1e-9)


# --- captioning: pycocoevalcap CIDEr as OpenFlamingo's coco_metric calls it -------------------


def karpathy_references(karpathy_path: Path) -> dict[str, list[str]]:
    """Read every image's "raw" reference sentences from a Karpathy JSON, keyed like sample ids."""
    references = {}
    for image in json.loads(karpathy_path.read_text())["images"]:
        image_id = image.get("cocoid", Path(image["filename"]).stem)
        references[str(image_id)] = [sentence["raw"] for sentence in image["sentences"]]
    return references


# Characters that the PTB tokenizer's Java process treats as line ends, besides "\n" (which
# pycocoevalcap replaces by a space itself). Measured with pycocoevalcap 1.2: each one in a
# caption shifts every later caption of the same tokenizer call onto the wrong image.
PTB_LINE_BREAKS = ("\r", "\x0b", "\x0c", "\u2028", "\u2029")


def without_line_breaks(text: str) -> str:
    for character in PTB_LINE_BREAKS:
        text = text.replace(character, " ")
    return text


def reference_cider(
    predictions: dict[str, str], references: dict[str, list[str]]
) -> tuple[float, dict]:
    """CIDEr x100 as COCOEvalCap computes it: PTB-tokenise references and results, then Cider.

    Only the predicted images are scored, as coco_metric restricts params["image_id"] to the
    result's image ids. Returns the corpus score and the per-image scores.
    One deliberate difference: line-break characters in predictions become spaces, because
    COCOEvalCap would assign the tokens after them to the wrong images.
    """
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    image_ids = list(predictions)
    gts = {
        image_id: [{"caption": caption} for caption in references[image_id]]
        for image_id in image_ids
    }
    res = {
        image_id: [{"caption": without_line_breaks(predictions[image_id])}]
        for image_id in image_ids
    }
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize(gts)
    res = tokenizer.tokenize(res)
    score, scores = Cider().compute_score(gts, res)
    per_image = {image_id: 100 * value for image_id, value in zip(gts.keys(), scores)}
    return 100 * score, per_image


@pytest.mark.parametrize("task_name", CAPTION_TASKS)
def test_caption_summary_equals_pycocoevalcap_cider(task_name, tiny_task_run, task_sample):
    run_dir = tiny_task_run(task_name)
    references = karpathy_references(eval_split_files(task_name, task_sample(task_name))["file"])
    for shots in SHOTS:
        records = shot_records(run_dir, shots)
        predictions = {record["sample_id"]: record["prediction"] for record in records}
        reference, per_image = reference_cider(predictions, references)

        summary = summary_value(run_dir, shots, "cider")
        assert summary == pytest.approx(reference, rel=1e-9, abs=1e-9)
        produced = {record["sample_id"]: record["scores"]["cider"] for record in records}
        assert produced == pytest.approx(per_image, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("task_name", CAPTION_TASKS)
def test_cider_agrees_on_reference_captions(task_name, tiny_task_run, task_sample):
    """Predictions taken from the references (another image's for every third item)."""
    run_dir = tiny_task_run(task_name)
    references = karpathy_references(eval_split_files(task_name, task_sample(task_name))["file"])
    records = shot_records(run_dir, 0)
    ids = [record["sample_id"] for record in records]
    for index, record in enumerate(records):
        source = ids[(index + 1) % len(ids)] if index % 3 == 2 else record["sample_id"]
        record["prediction"] = references[source][index % len(references[source])]
    predictions = {record["sample_id"]: record["prediction"] for record in records}

    result = METRICS["cider"](records, {})
    reference, per_image = reference_cider(predictions, references)

    assert result.value > 10
    assert result.value == pytest.approx(reference, rel=1e-9, abs=1e-9)
    assert result.per_sample == pytest.approx(per_image, rel=1e-9, abs=1e-9)


def test_cider_ignores_line_breaks_in_predictions():
    from flamingo_eval.metrics.captioning import score_captions

    references = {
        "1": ["a red square on the left", "a small red square"],
        "2": ["two blue circles", "blue circles in the middle"],
        "3": ["a green star", "one green star on the right"],
        "4": ["a yellow triangle", "a triangle that is yellow"],
    }
    # Each prediction but the last contains line-break characters. The last has none, and the
    # tokenizer assigns it to the wrong image when an earlier caption is split.
    predictions = {
        "1": "a red\x0bsquare",
        "2": "two blue\rcircles\x0c",
        "3": "a green\u2028star\u2029",
        "4": "a yellow triangle",
    }
    spaced = {image_id: without_line_breaks(text) for image_id, text in predictions.items()}

    result = score_captions(predictions, references)["cider"]
    expected = score_captions(spaced, references)["cider"]
    assert result.per_image == pytest.approx(expected.per_image)
    assert result.corpus == pytest.approx(expected.corpus)


# --- ranking tasks: numpy and scikit-learn -----------------------------------------------------


def test_imagenet_summary_equals_numpy_top_k(tiny_task_run):
    run_dir = tiny_task_run("imagenet")
    for shots in SHOTS:
        records = shot_records(run_dir, shots)
        targets = np.array([record["target"] for record in records])
        top_k = np.array([record["top_k"] for record in records])

        top1 = 100 * np.mean(top_k[:, 0] == targets)
        top5 = 100 * np.mean((top_k[:, :5] == targets[:, None]).any(axis=1))
        assert summary_value(run_dir, shots, "top1") == pytest.approx(top1, abs=1e-9)
        assert summary_value(run_dir, shots, "top5") == pytest.approx(top5, abs=1e-9)


def test_imagenet_top_k_follows_class_scores(tiny_task_run):
    """The written top_k is the class indices by descending score, ties to the lower index."""
    for record in read_jsonl(tiny_task_run("imagenet") / "predictions.jsonl"):
        scores = np.array(record["class_scores"])
        order = np.argsort(-scores, kind="stable")
        assert record["top_k"] == order[:5].tolist()
        assert record["prediction"] == int(order[0])


def test_hateful_memes_summary_equals_sklearn_roc_auc(tiny_task_run):
    from sklearn.metrics import roc_auc_score

    run_dir = tiny_task_run("hateful_memes")
    for shots in SHOTS:
        records = shot_records(run_dir, shots)
        targets = [record["target"] for record in records]
        positive = [record["positive_score"] for record in records]
        assert 0 < sum(targets) < len(targets), "both classes are needed for ROC-AUC"

        reference = 100 * roc_auc_score(targets, positive)
        assert summary_value(run_dir, shots, "roc_auc") == pytest.approx(reference, abs=1e-9)


def test_hateful_memes_positive_score_is_softmax_of_yes(tiny_task_run):
    class_names = load_task("hateful_memes").ranking.class_names
    yes = class_names.index("yes")
    for record in read_jsonl(tiny_task_run("hateful_memes") / "predictions.jsonl"):
        scores = np.array(record["class_scores"])
        probabilities = np.exp(scores - scores.max())
        probabilities /= probabilities.sum()
        assert record["positive_score"] == pytest.approx(probabilities[yes], rel=1e-9)


# --- test-dev splits: EvalAI submission files --------------------------------------------------


def write_testdev_task_file(task_name: str, folder: Path) -> Path:
    """Write a copy of the task file whose evaluated split is test-dev."""
    raw = yaml.safe_load(task_files()[task_name].read_text())
    raw["data"]["eval_split"] = "testdev"
    path = folder / f"{task_name}_testdev.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def testdev_runs(tiny_model, task_sample, tmp_path_factory) -> dict[str, Path]:
    from flamingo_eval.evaluate import evaluate
    from flamingo_eval.runner import RunOptions

    runs = {}
    for task_name in ("vqav2", "vizwiz"):
        folder = tmp_path_factory.mktemp(f"{task_name}_testdev")
        task = parse_task_file(write_testdev_task_file(task_name, folder))
        runs[task_name] = folder / "run"
        evaluate(
            tiny_model,
            [task],
            RunOptions(shots=[0], num_samples=TINY_RUN_SAMPLES),
            data_root=task_sample(task_name),
            output_dir=runs[task_name],
            command=[],
        )
    return runs


def openflamingo_submission_answer(prediction: str) -> str:
    """Clean an answer as OpenFlamingo's fill_vqa_testdev_results script does."""
    from open_flamingo.eval.vqa_metric import VQAEval

    processor = VQAEval(None, None)
    answer = prediction.replace("\n", " ").replace("\t", " ").strip()
    return processor.processDigitArticle(processor.processPunctuation(answer))


@pytest.mark.parametrize("task_name", ("vqav2", "vizwiz"))
def test_testdev_run_has_no_score(task_name, testdev_runs):
    run_dir = testdev_runs[task_name]
    records = read_jsonl(run_dir / "predictions.jsonl")
    assert len(records) == TINY_RUN_SAMPLES
    assert all(record["target"] is None for record in records)
    summary = pd.read_csv(run_dir / "summary.csv")
    assert summary["mean"].isna().all()


@pytest.mark.parametrize("task_name", ("vqav2", "vizwiz"))
def test_testdev_submission_file(task_name, testdev_runs, task_sample, tmp_path):
    run_dir = testdev_runs[task_name]
    task = parse_task_file(write_testdev_task_file(task_name, tmp_path))
    records = read_jsonl(run_dir / "predictions.jsonl")

    paths = write_submission(task, records, tmp_path)
    assert paths == [tmp_path / f"submission_{task_name}_0shot_seed42.json"]
    entries = json.loads(paths[0].read_text())

    questions_path = task_sample(task_name) / task.data.splits["testdev"]["questions"]
    questions = {
        str(question["question_id"]): question
        for question in json.loads(questions_path.read_text())["questions"]
    }
    expected = []
    for record in records:
        question = questions[record["sample_id"]]
        answer = openflamingo_submission_answer(record["prediction"])
        if task_name == "vizwiz":
            expected.append({"image": question["image_id"], "answer": answer})
        else:
            expected.append({"question_id": question["question_id"], "answer": answer})
    assert entries == expected


@pytest.mark.parametrize("task_name", ("vqav2", "vizwiz"))
def test_testdev_run_writes_submission(task_name, testdev_runs):
    assert (testdev_runs[task_name] / f"submission_{task_name}_0shot_seed42.json").is_file()


def test_submission_normalizes_like_openflamingo(tmp_path):
    task = load_task("vqav2")
    predictions = ["Two dogs.", " the RED one ", "isnt it", "3,000", "yes\tno", "a man's hat"]
    records = [
        {
            "shots": 4,
            "seed": 7,
            "sample_id": str(100 + index),
            "prediction": prediction,
            "fields": {"image_id": index},
        }
        for index, prediction in enumerate(predictions)
    ]
    records.append(
        {"shots": 0, "seed": 7, "sample_id": "5", "prediction": "", "fields": {"image_id": 5}}
    )

    paths = write_submission(task, records, tmp_path)

    assert [path.name for path in paths] == [
        "submission_vqav2_4shot_seed7.json",
        "submission_vqav2_0shot_seed7.json",
    ]
    four_shot = json.loads(paths[0].read_text())
    assert [entry["question_id"] for entry in four_shot] == list(range(100, 106))
    expected = [openflamingo_submission_answer(prediction) for prediction in predictions]
    assert [entry["answer"] for entry in four_shot] == expected
    assert json.loads(paths[1].read_text()) == [{"question_id": 5, "answer": ""}]


def test_submission_keeps_string_question_ids(tmp_path):
    task = load_task("textvqa")
    records = [{"shots": 0, "seed": 1, "sample_id": "q-007", "prediction": "stop", "fields": {}}]
    (path,) = write_submission(task, records, tmp_path)
    assert json.loads(path.read_text()) == [{"question_id": "q-007", "answer": "stop"}]


def test_submission_rejects_a_non_string_prediction(tmp_path):
    from flamingo_eval.errors import InputError

    records = [{"shots": 0, "seed": 1, "sample_id": "1", "prediction": 3, "fields": {}}]
    with pytest.raises(InputError, match="sample '1'"):
        write_submission(load_task("vqav2"), records, tmp_path)

