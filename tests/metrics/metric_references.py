"""Reference scorers for the metric tests, built on OpenFlamingo's own evaluation code.

`openflamingo_vqa` runs open_flamingo 2.0.1's VQA and VQAEval classes. `official_vqa` follows
GT-Vision-Lab's vqaEval.py at HEAD written out literally (normalise only when the answers are not
unanimous, leave-one-out by dict inequality), using OpenFlamingo's normalisation methods, whose
tables equal the official ones.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

from open_flamingo.eval.vqa_metric import VQA, VQAEval, compute_vqa_accuracy

METRIC_CASES = json.loads((Path(__file__).parent / "data" / "metric_cases.json").read_text())
REAL_ANNOTATIONS = Path(__file__).resolve().parents[3] / "shared" / "data" / "real_annotations"


def vqa_files(annotations: list[dict], predictions: dict[int, str], folder: Path) -> dict[str, str]:
    """Write question, annotation and result files in the VQA format; return their paths."""
    header = {"info": {}, "task_type": "Open-Ended", "data_type": "test", "license": {},
              "data_subtype": "test"}
    questions = [{"question_id": ann["question_id"], "image_id": ann.get("image_id", 0),
                  "question": "?"} for ann in annotations]
    paths = {name: str(folder / f"{name}.json") for name in ("questions", "annotations", "results")}
    Path(paths["questions"]).write_text(json.dumps({**header, "questions": questions}))
    Path(paths["annotations"]).write_text(json.dumps({**header, "annotations": annotations}))
    results = [{"question_id": qid, "answer": answer} for qid, answer in predictions.items()]
    Path(paths["results"]).write_text(json.dumps(results))
    return paths


def openflamingo_overall(paths: dict[str, str]) -> float:
    """Run OpenFlamingo's compute_vqa_accuracy on written files, silencing its prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        return compute_vqa_accuracy(paths["results"], paths["questions"], paths["annotations"])


def openflamingo_vqa(annotations: list[dict], predictions: dict[int, str]) -> tuple[float, dict]:
    """Run OpenFlamingo's VQAEval in memory; return its overall accuracy and evalQA."""
    evaluator = _evaluator(VQAEval, annotations, predictions)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
    return evaluator.accuracy["overall"], evaluator.evalQA


def official_vqa(annotations: list[dict], predictions: dict[int, str]) -> tuple[float, dict]:
    """Score as GT-Vision-Lab's vqaEval.py at HEAD does; return overall and per-question x100."""
    normalizer = VQAEval(None, None)
    per_question = {}
    fractions = []
    for annotation in copy.deepcopy(annotations):
        records = annotation["answers"]
        for record in records:
            record["answer"] = record["answer"].replace("\n", " ").replace("\t", " ").strip()
        prediction = predictions[annotation["question_id"]]
        prediction = prediction.replace("\n", " ").replace("\t", " ").strip()
        if len({record["answer"] for record in records}) > 1:
            for record in records:
                text = normalizer.processPunctuation(record["answer"])
                record["answer"] = normalizer.processDigitArticle(text)
            prediction = normalizer.processDigitArticle(normalizer.processPunctuation(prediction))
        accuracies = []
        for held_out in records:
            others = [record for record in records if record != held_out]
            matching = [record for record in others if record["answer"] == prediction]
            accuracies.append(min(1, float(len(matching)) / 3))
        fraction = float(sum(accuracies)) / len(accuracies)
        fractions.append(fraction)
        per_question[annotation["question_id"]] = round(100 * fraction, 2)
    return round(100 * float(sum(fractions)) / len(fractions), 2), per_question


def _evaluator(cls, annotations: list[dict], predictions: dict[int, str]) -> VQAEval:
    ground_truth = VQA()
    ground_truth.dataset = {"annotations": copy.deepcopy(annotations)}
    ground_truth.questions = {"questions": [{"question_id": ann["question_id"]}
                                            for ann in annotations]}
    results = VQA()
    results.dataset = {"annotations": [{"question_id": qid, "image_id": 0, "answer": answer}
                                       for qid, answer in predictions.items()]}
    results.questions = ground_truth.questions
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        results.createIndex()
    return cls(ground_truth, results, n=2)


def answer_records(answers: list[str], with_ids: bool = True) -> list[dict]:
    """Answer records as VQAv2 files have them, or as VizWiz files have them (no answer_id)."""
    records = []
    for index, answer in enumerate(answers):
        record = {"answer": answer, "answer_confidence": "yes"}
        if with_ids:
            record["answer_id"] = index + 1
        records.append(record)
    return records
