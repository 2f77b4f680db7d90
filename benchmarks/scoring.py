"""Benchmark the scoring side of an evaluation: VQA accuracy, CIDEr, and loading VQAv2-size files.

Three benchmarks, each timed or measured in fresh child processes so that caches (the answer
normalisation's lru_cache, the JVM) and peak memory belong to one run only:

- vqa: VQA accuracy on 214,000 predictions built by repeating the real TextVQA and VizWiz val
  annotations with new question ids and predictions derived from their answers. OpenFlamingo
  2.0.1's `compute_vqa_accuracy` (which reads files) is timed against flamingo-eval's
  `vqa_accuracy`, both reading the same files, alternating. Both results must be equal.
  Target: at least 5x faster.
- cider: `score_captions(..., metrics=("cider",))` on 5,000 synthetic captions with 5 references
  each, PTB tokenisation (a Java process) included. Target: under 15 s.
- memory: peak RSS of a process that loads generated VQAv2-size train (443,757 questions) and
  val (214,354 questions) files through `load_split`. Target: under 2 GB.

    python benchmarks/scoring.py --output docs/benchmarks/scoring.md

Needs Java on PATH (the PTB tokenizer) and the real annotations folder (--real-annotations).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import platform
import random
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterable

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

DEFAULT_REAL_ANNOTATIONS = REPO_ROOT.parent / "shared" / "data" / "real_annotations"
REAL_SOURCES = ("textvqa", "vizwiz")
BENCHMARKS = ("vqa", "cider", "memory")

VQA_SPEEDUP_TARGET = 5.0
CIDER_SECONDS_TARGET = 15.0
LOAD_PEAK_TARGET_BYTES = 2 * 1000**3


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS),
                        help="benchmarks to run (default: all three)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per method for vqa and cider (default: 3)")
    parser.add_argument("--vqa-predictions", type=int, default=214_000,
                        help="number of VQA predictions (default: 214000)")
    parser.add_argument("--captions", type=int, default=5000,
                        help="number of captioned images (default: 5000)")
    parser.add_argument("--references", type=int, default=5,
                        help="reference captions per image (default: 5)")
    parser.add_argument("--train-questions", type=int, default=443_757,
                        help="questions in the generated train split (default: 443757, as VQAv2)")
    parser.add_argument("--val-questions", type=int, default=214_354,
                        help="questions in the generated val split (default: 214354, as VQAv2)")
    parser.add_argument("--create-images", action="store_true",
                        help="create an empty file per image for the memory benchmark instead of "
                             "replacing the loader's image existence check")
    parser.add_argument("--seed", type=int, default=0, help="seed of all generated data (default: 0)")
    parser.add_argument("--real-annotations", type=Path, default=DEFAULT_REAL_ANNOTATIONS,
                        help="folder with textvqa/ and vizwiz/ val files in VQA format")
    parser.add_argument("--work-dir", type=Path,
                        help="folder for generated files (default: a temporary folder)")
    parser.add_argument("--output", type=Path, help="also write the report to this Markdown file")
    parser.add_argument("--child", choices=["vqa-ours", "vqa-openflamingo", "cider", "memory"],
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Process measurements shared by the children


def cpu_seconds() -> float:
    """User plus system CPU time of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_status_bytes(field: str) -> int:
    """Return a memory field of /proc/self/status ("VmRSS", "VmHWM") in bytes."""
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field} line")


def current_rss_bytes() -> int:
    return proc_status_bytes("VmRSS")


def peak_rss_bytes() -> int:
    """Peak resident memory of this process's own address space (VmHWM).

    `ru_maxrss` is not used for this. Linux folds the peak of the address space that execve
    replaces into it, and a child started by subprocess replaces a copy of the parent's address
    space (with vfork, the parent's own). So a child's ru_maxrss is at least the parent's RSS.
    """
    return proc_status_bytes("VmHWM")


def ru_maxrss_bytes() -> int:
    """Return `ru_maxrss` in bytes, which includes the parent's RSS (see `peak_rss_bytes`)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_child(args: argparse.Namespace, child: str, extra: Iterable[str] = ()) -> dict[str, Any]:
    """Run this script as `--child CHILD` and return the JSON object on its last stdout line."""
    command = [sys.executable, __file__, "--child", child, "--work-dir", str(args.work_dir),
               "--seed", str(args.seed), *extra]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"child {child} failed with exit status {result.returncode}:\n"
                           f"{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def mib(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"


# ---------------------------------------------------------------------------------------------
# VQA accuracy: data


def build_vqa_files(real_dir: Path, work_dir: Path, count: int) -> dict[str, Any]:
    """Write questions, annotations and results files for `count` predictions.

    The real annotations are repeated (TextVQA, then VizWiz, then TextVQA again, ...) with
    question ids 0..count-1. The first repeat's ids differ from the originals too, so every
    question is new. Image ids, question types and answer records stay as in the originals.
    """
    sources = []
    for name in REAL_SOURCES:
        folder = real_dir / name
        with open(folder / "val_annotations_vqa_format.json", encoding="utf-8") as handle:
            annotations = json.load(handle)
        with open(folder / "val_questions_vqa_format.json", encoding="utf-8") as handle:
            questions = json.load(handle)
        by_id = {question["question_id"]: question for question in questions["questions"]}
        pairs = [(annotation, by_id[annotation["question_id"]])
                 for annotation in annotations["annotations"]]
        sources.append((name, pairs, annotations, questions))

    cycle = [(name, annotation, question) for name, pairs, _, _ in sources
             for annotation, question in pairs]
    new_annotations = []
    new_questions = []
    results = []
    rules = collections.Counter()
    for question_id in range(count):
        name, annotation, question = cycle[question_id % len(cycle)]
        new_annotations.append({**annotation, "question_id": question_id})
        new_questions.append({**question, "question_id": question_id})
        other = cycle[(question_id + 7919) % len(cycle)][1]
        rule, prediction = derive_prediction(question_id, annotation["answers"], other["answers"])
        rules[rule] += 1
        results.append({"question_id": question_id, "answer": prediction})

    # OpenFlamingo's loadRes copies these header fields from the questions file.
    _, _, first_annotations, first_questions = sources[0]
    questions_header = {key: value for key, value in first_questions.items() if key != "questions"}
    questions_header["data_subtype"] = "TextVQA+VizWiz-validation-repeated"
    annotations_header = {key: value for key, value in first_annotations.items()
                          if key != "annotations"}
    annotations_header["data_subtype"] = questions_header["data_subtype"]

    paths = vqa_paths(work_dir)
    write_json(paths["questions"], {**questions_header, "questions": new_questions})
    write_json(paths["annotations"], {**annotations_header, "annotations": new_annotations})
    write_json(paths["results"], results)
    source_counts = collections.Counter(name for name, _, _ in
                                        (cycle[index % len(cycle)] for index in range(count)))
    return {
        "source_questions": {name: len(pairs) for name, pairs, _, _ in sources},
        "questions_per_source": dict(source_counts),
        "repeats": count / len(cycle),
        "prediction_rules": {rule: rules[rule] for rule in PREDICTION_RULES if rule in rules},
        "file_sizes": {key: path.stat().st_size for key, path in paths.items()},
    }


PREDICTION_RULES = (
    "first answer",
    "second answer",
    "most common answer, capitalised, with a trailing period",
    "first answer lower-cased",
    "empty string",
    "'the ' + third answer + newline",
    "most common answer of another question",
    "last answer upper-cased, in quotes",
)


def derive_prediction(index: int, answers: list[dict], other_answers: list[dict]) -> tuple[str, str]:
    """Pick a rule by index and derive a prediction from a question's answer records."""
    strings = [record["answer"] for record in answers]
    rule = PREDICTION_RULES[index % len(PREDICTION_RULES)]
    if rule == "first answer":
        prediction = strings[0]
    elif rule == "second answer":
        prediction = strings[min(1, len(strings) - 1)]
    elif rule.startswith("most common answer,"):
        prediction = collections.Counter(strings).most_common(1)[0][0].capitalize() + "."
    elif rule == "first answer lower-cased":
        prediction = strings[0].lower()
    elif rule == "empty string":
        prediction = ""
    elif rule.startswith("'the '"):
        prediction = "the " + strings[min(2, len(strings) - 1)] + "\n"
    elif rule.startswith("most common answer of another"):
        others = [record["answer"] for record in other_answers]
        prediction = collections.Counter(others).most_common(1)[0][0]
    else:
        prediction = f'"{strings[-1].upper()}"'
    return rule, prediction


def vqa_paths(work_dir: Path) -> dict[str, Path]:
    return {
        "questions": work_dir / "vqa_questions.json",
        "annotations": work_dir / "vqa_annotations.json",
        "results": work_dir / "vqa_results.json",
    }


def write_json(path: Path, document: Any) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(document))


# ---------------------------------------------------------------------------------------------
# VQA accuracy: timed children


def child_vqa_ours(work_dir: Path) -> dict[str, Any]:
    """Read the annotations and results files, then score them with `vqa_accuracy`."""
    from flamingo_eval.metrics.vqa import vqa_accuracy

    import_rss = current_rss_bytes()
    paths = vqa_paths(work_dir)
    cpu_start = cpu_seconds()
    start = time.perf_counter()
    with open(paths["annotations"], encoding="utf-8") as handle:
        annotations = json.load(handle)["annotations"]
    with open(paths["results"], encoding="utf-8") as handle:
        results = json.load(handle)
    answers_by_id = {str(record["question_id"]): record["answers"] for record in annotations}
    predictions = {str(record["question_id"]): record["answer"] for record in results}
    read_done = time.perf_counter()
    overall, per_question = vqa_accuracy(predictions, answers_by_id, "openflamingo")
    end = time.perf_counter()
    cpu = cpu_seconds() - cpu_start

    write_json(work_dir / "per_question-ours.json", per_question)
    return {
        "seconds": end - start,
        "read_seconds": read_done - start,
        "score_seconds": end - read_done,
        "cpu_seconds": cpu,
        "peak_rss": peak_rss_bytes(),
        "import_rss": import_rss,
        "overall": overall,
        "questions": len(per_question),
    }


def child_vqa_openflamingo(work_dir: Path) -> dict[str, Any]:
    """Time open_flamingo's `compute_vqa_accuracy`, which reads all three files itself.

    Its progress output goes to /dev/null. A subclass of its VQAEval keeps the evaluator, so the
    per-question values can be compared afterwards. The subclass adds one call and no work.
    """
    from open_flamingo.eval import vqa_metric

    import_rss = current_rss_bytes()
    evaluators = []

    class KeptVQAEval(vqa_metric.VQAEval):
        def evaluate(self, quesIds=None):  # noqa: N803 (the parent's parameter name)
            super().evaluate(quesIds)
            evaluators.append(self)

    vqa_metric.VQAEval = KeptVQAEval
    paths = vqa_paths(work_dir)
    with open(os.devnull, "w", encoding="utf-8") as devnull, contextlib.redirect_stdout(devnull):
        cpu_start = cpu_seconds()
        start = time.perf_counter()
        overall = vqa_metric.compute_vqa_accuracy(
            str(paths["results"]), str(paths["questions"]), str(paths["annotations"])
        )
        end = time.perf_counter()
        cpu = cpu_seconds() - cpu_start

    per_question = {str(question_id): value for question_id, value in evaluators[0].evalQA.items()}
    write_json(work_dir / "per_question-openflamingo.json", per_question)
    return {
        "seconds": end - start,
        "cpu_seconds": cpu,
        "peak_rss": peak_rss_bytes(),
        "import_rss": import_rss,
        "overall": overall,
        "questions": len(per_question),
    }


def compare_per_question(work_dir: Path) -> dict[str, Any]:
    with open(work_dir / "per_question-ours.json", encoding="utf-8") as handle:
        ours = json.load(handle)
    with open(work_dir / "per_question-openflamingo.json", encoding="utf-8") as handle:
        theirs = json.load(handle)
    differing = [question_id for question_id in theirs if ours.get(question_id) != theirs[question_id]]
    return {
        "same_ids": set(ours) == set(theirs),
        "differing": len(differing),
        "first_differing": differing[:5],
    }


def run_vqa(args: argparse.Namespace) -> dict[str, Any]:
    data = build_vqa_files(args.real_annotations, args.work_dir, args.vqa_predictions)
    runs: dict[str, list[dict[str, Any]]] = {"openflamingo": [], "ours": []}
    for repeat in range(args.repeats):
        for method in runs:
            run = run_child(args, f"vqa-{method}")
            runs[method].append(run)
            print(f"vqa run {repeat + 1} {method}: {run}", file=sys.stderr, flush=True)
    per_question = compare_per_question(args.work_dir)
    overall_values = {run["overall"] for method_runs in runs.values() for run in method_runs}
    return {"data": data, "runs": runs, "per_question": per_question,
            "identical": len(overall_values) == 1 and per_question["same_ids"]
                         and per_question["differing"] == 0}


# ---------------------------------------------------------------------------------------------
# CIDEr


SUBJECTS = ("man", "woman", "boy", "girl", "dog", "cat", "horse", "child", "skier", "surfer",
            "player", "chef", "cyclist", "bird", "cow", "elephant", "giraffe", "couple", "group of people",
            "baby", "teenager", "police officer", "train", "bus", "truck")
ADJECTIVES = ("young", "old", "small", "large", "brown", "white", "black", "red", "happy",
              "tall", "little", "smiling", "wet", "striped", "busy")
ACTIONS = (("riding", "a bicycle"), ("holding", "an umbrella"), ("eating", "a sandwich"),
           ("throwing", "a frisbee"), ("carrying", "a surfboard"), ("playing", "tennis"),
           ("sitting on", "a bench"), ("standing next to", "a fence"), ("walking with", "a suitcase"),
           ("looking at", "a laptop"), ("cutting", "a cake"), ("flying", "a kite"),
           ("drinking from", "a cup"), ("reading", "a newspaper"), ("parked near", "a building"),
           ("crossing", "the street"), ("lying on", "a couch"), ("chasing", "a ball"))
PLACES = ("in a park", "on the beach", "in the kitchen", "down a snowy hill", "on a city street",
          "in a field", "at the station", "near the water", "in a living room", "on a wooden table",
          "under a tree", "at night", "in the rain", "next to a car", "on a grassy hill")
TEMPLATES = (
    "A {adjective} {subject} {verb} {object} {place}.",
    "The {subject} is {verb} {object} {place}",
    "{article} {adjective} {subject} {verb} {object}.",
    "There is a {subject} {verb} {object} {place}.",
    "A {subject}, {verb} {object}, {place}.",
    "Someone's {subject} {verb} {object} {place}!",
    "A photo of a {adjective} {subject} {verb} {object}.",
)


def synthetic_captions(count: int, references: int, seed: int) -> tuple[dict, dict, dict]:
    """Return predictions, references and the count of each prediction kind, keyed by image id.

    Each image has a scene (subject, adjective, action, place). Its references are template
    sentences about that scene, with the adjective or the place sometimes varied. Predictions are, by image index: a
    reference with one word changed, a new sentence about the same scene, another image's
    reference, or a short generic caption.
    """
    rng = random.Random(seed)
    scenes = []
    for _ in range(count):
        scenes.append((rng.choice(SUBJECTS), rng.choice(ADJECTIVES), rng.choice(ACTIONS),
                       rng.choice(PLACES)))

    def sentence(scene: tuple) -> str:
        subject, adjective, (verb, target), place = scene
        if rng.random() < 0.3:
            adjective = rng.choice(ADJECTIVES)
        if rng.random() < 0.3:
            place = rng.choice(PLACES)
        template = rng.choice(TEMPLATES)
        article = "An" if adjective[0] in "aeiou" else "A"
        return template.format(adjective=adjective, subject=subject, verb=verb, object=target,
                               place=place, article=article)

    reference_captions = {}
    predictions = {}
    kinds = collections.Counter()
    for index, scene in enumerate(scenes):
        image_id = str(100_000 + index)
        reference_captions[image_id] = [sentence(scene) for _ in range(references)]
    for index, scene in enumerate(scenes):
        image_id = str(100_000 + index)
        kind = index % 4
        if kind == 0:
            words = reference_captions[image_id][0].split()
            words[rng.randrange(len(words))] = rng.choice(ADJECTIVES)
            predictions[image_id] = " ".join(words)
            kinds["a reference with one word replaced"] += 1
        elif kind == 1:
            predictions[image_id] = sentence(scene).lower()
            kinds["a new lower-cased sentence about the same scene"] += 1
        elif kind == 2:
            other = str(100_000 + (index + 1237) % count)
            predictions[image_id] = reference_captions[other][rng.randrange(references)]
            kinds["a reference of another image"] += 1
        else:
            predictions[image_id] = f"a picture of a {scene[0]}"
            kinds["a short generic caption"] += 1
    return predictions, reference_captions, dict(kinds)


def child_cider(work_dir: Path, count: int, references: int, seed: int) -> dict[str, Any]:
    """Time `score_captions` for CIDEr, then its two stages separately for a breakdown."""
    from pycocoevalcap.cider.cider import Cider

    from flamingo_eval.metrics.captioning import score_captions, tokenize_captions

    predictions, reference_captions, _ = synthetic_captions(count, references, seed)
    cpu_start = cpu_seconds()
    start = time.perf_counter()
    scores = score_captions(predictions, reference_captions, metrics=("cider",))
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start

    start = time.perf_counter()
    candidates, tokenized_references = tokenize_captions(predictions, reference_captions)
    tokenize_seconds = time.perf_counter() - start
    start = time.perf_counter()
    corpus, _ = Cider().compute_score(tokenized_references, candidates)
    cider_seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "tokenize_seconds": tokenize_seconds,
        "cider_only_seconds": cider_seconds,
        "cider": scores["cider"].corpus,
        "cider_direct": 100 * float(corpus),
        "images": len(scores["cider"].per_image),
        "peak_rss": peak_rss_bytes(),
    }


def run_cider(args: argparse.Namespace) -> dict[str, Any]:
    _, _, kinds = synthetic_captions(args.captions, args.references, args.seed)
    runs = []
    for repeat in range(args.repeats):
        run = run_child(args, "cider", ["--captions", str(args.captions),
                                        "--references", str(args.references)])
        runs.append(run)
        print(f"cider run {repeat + 1}: {run}", file=sys.stderr, flush=True)
    return {"kinds": kinds, "runs": runs}


# ---------------------------------------------------------------------------------------------
# Memory of loading VQAv2-size files


QUESTION_TYPES = {
    "yes/no": ("is the", "are the", "is this", "does the", "is there a", "are there", "can you"),
    "number": ("how many", "how many people are", "what number is"),
    "other": ("what color is the", "what is the", "what is on the", "what type of", "where is the",
              "what is this", "what kind of", "which", "why", "what is the man"),
}
QUESTION_OBJECTS = ("dog", "cat", "man", "woman", "car", "bus", "train", "plate", "table", "sign",
                    "kite", "umbrella", "horse", "bench", "clock", "pizza", "laptop", "bed",
                    "window", "tree", "boat", "giraffe", "elephant", "shirt", "wall")
# Answer type shares, an estimate of VQAv2's: yes/no 38 %, number 12 %, other 50 %.
ANSWER_TYPE_WEIGHTS = (("yes/no", 0.38), ("number", 0.12), ("other", 0.50))
CONFIDENCES = ("yes",) * 17 + ("maybe",) * 2 + ("no",)


def answer_pool(real_dir: Path) -> list[str]:
    """Return the distinct real TextVQA and VizWiz answers, most frequent first."""
    counts: collections.Counter = collections.Counter()
    for name in REAL_SOURCES:
        with open(real_dir / name / "val_annotations_vqa_format.json", encoding="utf-8") as handle:
            for annotation in json.load(handle)["annotations"]:
                counts.update(record["answer"] for record in annotation["answers"])
    return [answer for answer, _ in counts.most_common()]


def generated_answers(rng: random.Random, answer_type: str, pool: list[str], question_id: int) -> list[str]:
    """Return ten annotators' answers for a question of `answer_type`."""
    if answer_type == "yes/no":
        majority = rng.choice(("yes", "no"))
        minority = "no" if majority == "yes" else "yes"
        return [majority if rng.random() < 0.9 else minority for _ in range(10)]
    if answer_type == "number":
        majority = min(int(rng.expovariate(0.4)), 50)
        return [str(majority if rng.random() < 0.7 else max(0, majority + rng.choice((-1, 1, 2))))
                for _ in range(10)]
    # A skewed draw from the pool, so common answers repeat and rare ones stay rare.
    majority = pool[int(len(pool) * rng.random() ** 3)]
    answers = []
    for annotator in range(10):
        draw = rng.random()
        if draw < 0.6:
            answers.append(majority)
        elif draw < 0.9:
            answers.append(pool[int(len(pool) * rng.random() ** 2)])
        else:
            # A free-text answer no other question has.
            answers.append(f"{rng.choice(pool)} {question_id % 9973} {annotator}")
    return answers


def write_vqav2_split(
    folder: Path, subtype: str, questions: int, images: int, pool: list[str], rng: random.Random,
) -> list[int]:
    """Write a VQAv2-layout questions and annotations file pair, and return the image ids.

    As in VQAv2, question ids are image_id * 1000 + the question's index on its image, and every
    image has 5 questions, and the first `questions - 5 * images` images have 6.
    """
    image_ids = sorted(rng.sample(range(1, 600_000), images))
    info = {"description": "Synthetic VQAv2-size data for a memory benchmark", "version": "2.0",
            "year": 2017, "contributor": "flamingo-eval benchmarks/scoring.py",
            "date_created": "2017-04-26"}
    license_ = {"url": "http://creativecommons.org/licenses/by/4.0/",
                "name": "Creative Commons Attribution 4.0 International License"}
    extra = questions - 5 * images
    if extra < 0 or extra > images:
        raise ValueError(f"{questions} questions do not fit 5 or 6 per image on {images} images")
    names = {"train2014": ("v2_OpenEnded_mscoco_train2014_questions.json",
                           "v2_mscoco_train2014_annotations.json"),
             "val2014": ("v2_OpenEnded_mscoco_val2014_questions.json",
                         "v2_mscoco_val2014_annotations.json")}[subtype]
    type_names = [name for name, _ in ANSWER_TYPE_WEIGHTS]
    type_weights = [weight for _, weight in ANSWER_TYPE_WEIGHTS]

    with open(folder / names[0], "w", encoding="utf-8") as question_file, \
            open(folder / names[1], "w", encoding="utf-8") as annotation_file:
        question_file.write(json.dumps({"info": info, "task_type": "Open-Ended",
                                        "data_type": "mscoco", "license": license_,
                                        "data_subtype": subtype})[:-1] + ', "questions": [')
        annotation_file.write(json.dumps({"info": info, "license": license_,
                                          "data_subtype": subtype})[:-1] + ', "annotations": [')
        question_chunk: list[dict] = []
        annotation_chunk: list[dict] = []
        first_chunk = True

        def flush() -> None:
            nonlocal first_chunk
            separator = "" if first_chunk else ", "
            question_file.write(separator + json.dumps(question_chunk)[1:-1])
            annotation_file.write(separator + json.dumps(annotation_chunk)[1:-1])
            question_chunk.clear()
            annotation_chunk.clear()
            first_chunk = False

        for image_index, image_id in enumerate(image_ids):
            for position in range(6 if image_index < extra else 5):
                question_id = image_id * 1000 + position
                answer_type = rng.choices(type_names, type_weights)[0]
                question_type = rng.choice(QUESTION_TYPES[answer_type])
                question = f"{question_type.capitalize()} {rng.choice(QUESTION_OBJECTS)}?"
                answers = generated_answers(rng, answer_type, pool, question_id)
                question_chunk.append({"image_id": image_id, "question": question,
                                       "question_id": question_id})
                annotation_chunk.append({
                    "question_type": question_type,
                    "multiple_choice_answer": collections.Counter(answers).most_common(1)[0][0],
                    "answers": [{"answer": answer, "answer_confidence": rng.choice(CONFIDENCES),
                                 "answer_id": number + 1} for number, answer in enumerate(answers)],
                    "image_id": image_id,
                    "answer_type": answer_type,
                    "question_id": question_id,
                })
            if len(question_chunk) >= 20_000:
                flush()
        if question_chunk:
            flush()
        question_file.write("]}")
        annotation_file.write('], "data_type": "mscoco"}')
    return image_ids


def build_vqav2_files(args: argparse.Namespace) -> dict[str, Any]:
    """Generate the VQAv2-size files (reusing them when the work folder has this configuration)."""
    folder = args.work_dir / "vqav2"
    manifest_path = folder / "manifest.json"
    # Image counts of VQAv2 train2014 and val2014, scaled when fewer questions are asked for.
    train_images = min(82_783, args.train_questions // 5)
    val_images = min(40_504, args.val_questions // 5)
    configuration = {"train_questions": args.train_questions, "val_questions": args.val_questions,
                     "train_images": train_images, "val_images": val_images, "seed": args.seed,
                     "create_images": args.create_images, "generator_version": 1}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest["configuration"] == configuration:
            return manifest
    folder.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    pool = answer_pool(args.real_annotations)
    rng = random.Random(args.seed)
    train_ids = write_vqav2_split(folder, "train2014", args.train_questions, train_images, pool, rng)
    val_ids = write_vqav2_split(folder, "val2014", args.val_questions, val_images, pool, rng)
    if args.create_images:
        for subfolder, prefix, ids in (("train2014", "COCO_train2014_", train_ids),
                                       ("val2014", "COCO_val2014_", val_ids)):
            (folder / subfolder).mkdir(exist_ok=True)
            for image_id in ids:
                (folder / subfolder / f"{prefix}{image_id:012d}.jpg").touch()
    manifest = {
        "configuration": configuration,
        "answer_pool": len(pool),
        "generation_seconds": time.perf_counter() - start,
        "file_sizes": {path.name: path.stat().st_size for path in sorted(folder.glob("*.json"))
                       if path.name != "manifest.json"},
    }
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    return manifest


def child_memory(work_dir: Path, create_images: bool) -> dict[str, Any]:
    """Load train and val of the generated VQAv2 files and report RSS at each step."""
    from flamingo_eval.data import files, load_split
    from flamingo_eval.registry import load_task

    steps = {"after imports": {"current_rss": current_rss_bytes(), "peak_rss": peak_rss_bytes()}}
    if not create_images:
        # No image files exist; every referenced image counts as present.
        files.file_exists = lambda path: True
    task = load_task("vqav2")
    splits = {}
    seconds = {}
    for split in ("train", "val"):
        start = time.perf_counter()
        splits[split] = load_split(task, split, work_dir / "vqav2")
        seconds[split] = time.perf_counter() - start
        steps[f"after loading {split}"] = {"current_rss": current_rss_bytes(),
                                           "peak_rss": peak_rss_bytes()}
    distinct_images = {split: len({example.image.key for example in examples})
                       for split, examples in splits.items()}
    return {
        "steps": steps,
        "seconds": seconds,
        "questions": {split: len(examples) for split, examples in splits.items()},
        "distinct_images": distinct_images,
        "answers": {split: sum(len(example.target) for example in examples)
                    for split, examples in splits.items()},
        "peak_rss": peak_rss_bytes(),
        "ru_maxrss": ru_maxrss_bytes(),
    }


def run_memory(args: argparse.Namespace) -> dict[str, Any]:
    manifest = build_vqav2_files(args)
    print(f"vqav2 files: {manifest}", file=sys.stderr, flush=True)
    extra = ["--create-images"] if args.create_images else []
    result = run_child(args, "memory", extra)
    print(f"memory: {result}", file=sys.stderr, flush=True)
    return {"manifest": manifest, "result": result}


# ---------------------------------------------------------------------------------------------
# Machine, versions and report


def machine_description() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": f"{memory_kib / 1024**2:.1f} GiB",
        "platform": platform.platform(),
    }


def load_average() -> str:
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def java_version() -> str:
    try:
        result = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return "not found"
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[0] if lines else "unknown"


def versions() -> str:
    packages = ", ".join(f"{name} {package_version(name)}"
                         for name in ("torch", "numpy", "open-flamingo", "pycocoevalcap"))
    return f"python {platform.python_version()}, {packages}, java: {java_version()}"


def seconds_list(values: Iterable[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def vqa_section(args: argparse.Namespace, vqa: dict[str, Any]) -> list[str]:
    data = vqa["data"]
    theirs = vqa["runs"]["openflamingo"]
    ours = vqa["runs"]["ours"]
    their_median = statistics.median(run["seconds"] for run in theirs)
    our_median = statistics.median(run["seconds"] for run in ours)
    our_score_median = statistics.median(run["score_seconds"] for run in ours)
    their_cpu = statistics.median(run["cpu_seconds"] for run in theirs)
    our_cpu = statistics.median(run["cpu_seconds"] for run in ours)
    speedup = their_median / our_median

    per_question = vqa["per_question"]

    lines = [
        "## VQA accuracy",
        "",
        f"- {args.vqa_predictions} predictions: the real TextVQA ({data['source_questions']['textvqa']}) "
        f"and VizWiz ({data['source_questions']['vizwiz']}) val annotations repeated "
        f"{data['repeats']:.2f} times ({', '.join(f'{name} {count}' for name, count in data['questions_per_source'].items())}), "
        f"question ids 0..{args.vqa_predictions - 1}, answer records unchanged",
        "- predictions derived from each question's answers, by question id modulo 8 "
        "(number of questions in brackets):",
        *[f"  {index}. {rule} ({count})"
          for index, (rule, count) in enumerate(data["prediction_rules"].items())],
        "- files: " + ", ".join(f"{name} {mib(size)}" for name, size in data["file_sizes"].items()),
        "- OpenFlamingo: `open_flamingo.eval.vqa_metric.compute_vqa_accuracy(results, questions, "
        "annotations)`, which reads the questions file twice, the annotations and the results; "
        "its progress output goes to /dev/null",
        "- ours: `json.load` of the annotations and results files, dicts keyed by str(question_id), "
        "then `flamingo_eval.metrics.vqa.vqa_accuracy(predictions, answers_by_id, \"openflamingo\")`; "
        "it needs no questions file",
        f"- {args.repeats} runs per method, alternating, each in a fresh process (cold caches); "
        "imports happen before the clock starts. `import open_flamingo.eval` imports the "
        "`open_flamingo` package, which loads torch, open_clip and transformers",
        "",
        "| method | wall time of runs (s) | median (s) | median CPU time (s) | RSS after imports | peak RSS (VmHWM) | overall accuracy |",
        "|---|---|---:|---:|---:|---:|---:|",
        f"| OpenFlamingo `compute_vqa_accuracy` (reads files) | {seconds_list(run['seconds'] for run in theirs)} | "
        f"{their_median:.2f} | {their_cpu:.2f} | {mib(theirs[0]['import_rss'])} | "
        f"{mib(max(run['peak_rss'] for run in theirs))} | "
        f"{theirs[0]['overall']} |",
        f"| ours, reading the same files + `vqa_accuracy` | {seconds_list(run['seconds'] for run in ours)} | "
        f"{our_median:.2f} | {our_cpu:.2f} | {mib(ours[0]['import_rss'])} | "
        f"{mib(max(run['peak_rss'] for run in ours))} | "
        f"{ours[0]['overall']} |",
        f"| ours, `vqa_accuracy` alone (of the row above) | {seconds_list(run['score_seconds'] for run in ours)} | "
        f"{our_score_median:.2f} | | | | |",
        "",
        f"- speed-up, both reading files (median wall time): {speedup:.1f}x "
        f"(target >= {VQA_SPEEDUP_TARGET:g}x: {verdict(speedup >= VQA_SPEEDUP_TARGET)}); "
        f"median CPU time: {their_cpu / our_cpu:.1f}x; OpenFlamingo against our scoring alone: "
        f"{their_median / our_score_median:.1f}x",
        f"- overall accuracy identical in all {2 * args.repeats} runs: "
        f"{'yes' if vqa['identical'] else 'NO'}; per-question values (x100, 2 decimals) "
        f"that differ: {per_question['differing']} of {theirs[0]['questions']}"
        + (f", e.g. question ids {per_question['first_differing']}" if per_question["differing"] else ""),
        "",
    ]
    return lines


def cider_section(args: argparse.Namespace, cider: dict[str, Any]) -> list[str]:
    runs = cider["runs"]
    median = statistics.median(run["seconds"] for run in runs)
    worst = max(run["seconds"] for run in runs)
    return [
        "## CIDEr",
        "",
        f"- {args.captions} images, {args.references} reference captions each, from templates about "
        "a random scene per image (subject, adjective, action, place), with capitals, commas, "
        "periods and apostrophes for the PTB tokenizer to remove",
        "- predictions by image index modulo 4 (number of images in brackets):",
        *[f"  {index}. {kind} ({count})" for index, (kind, count) in enumerate(cider["kinds"].items())],
        "- timed: `flamingo_eval.metrics.captioning.score_captions(predictions, references, "
        "metrics=(\"cider\",))`, PTB tokenisation (one Java process) included; then, for the "
        "breakdown, `tokenize_captions` and pycocoevalcap's `Cider().compute_score` alone",
        f"- {args.repeats} runs, each in a fresh process",
        "",
        "| run | wall time (s) | CPU time of the Python process (s) | PTB tokenisation alone (s) | CIDEr alone (s) | CIDEr | peak RSS of the Python process (VmHWM) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ] + [
        f"| {index + 1} | {run['seconds']:.2f} | {run['cpu_seconds']:.2f} | {run['tokenize_seconds']:.2f} | "
        f"{run['cider_only_seconds']:.2f} | {run['cider']:.2f} | {mib(run['peak_rss'])} |"
        for index, run in enumerate(runs)
    ] + [
        "",
        f"- median {median:.2f} s, slowest {worst:.2f} s (target < {CIDER_SECONDS_TARGET:g} s: "
        f"{verdict(worst < CIDER_SECONDS_TARGET)}); the Java tokenizer's CPU time is not in the "
        "CPU column",
        f"- `score_captions` equals pycocoevalcap's `Cider` on the same tokens: "
        f"{'yes' if all(math.isclose(run['cider'], run['cider_direct']) for run in runs) else 'NO'}",
        "",
    ]


def memory_section(args: argparse.Namespace, memory: dict[str, Any]) -> list[str]:
    manifest = memory["manifest"]
    result = memory["result"]
    configuration = manifest["configuration"]
    peak = result["peak_rss"]
    image_check = ("an empty file was created per image" if args.create_images else
                   "no image files exist: the child process replaces "
                   "`flamingo_eval.data.files.file_exists` with a function that returns True")
    lines = [
        "## Memory of loading VQAv2-size annotation files",
        "",
        f"- generated in the VQAv2 official layout (`tasks/vqav2.yaml` file names): train "
        f"{configuration['train_questions']} questions on {configuration['train_images']} images, "
        f"val {configuration['val_questions']} questions on {configuration['val_images']} images, "
        "10 answer records each ({answer, answer_confidence, answer_id}), question_type, "
        "answer_type and multiple_choice_answer as in VQAv2",
        "- answer types: yes/no 38 % of questions, number 12 %, other 50 %",
        "  - yes/no: 90 % of the 10 annotators give the majority answer, the others the opposite",
        "  - number: a majority count from 0 to 50; 70 % give it, the others a count near it",
        f"  - other: a skewed draw from the {manifest['answer_pool']} distinct real TextVQA and "
        "VizWiz answers. 60 % of annotators give it, 30 % another answer from that pool and 10 % "
        "a free-text answer that no other question has",
        "  - answer_confidence yes/maybe/no: 85/10/5 %",
        "- files: " + ", ".join(f"{name} {mib(size)}" for name, size in manifest["file_sizes"].items()),
        f"- images: {image_check}",
        "- measured: a fresh process imports `flamingo_eval.data` and `flamingo_eval.registry`, "
        "then keeps both splits from `load_split(load_task(\"vqav2\"), split, folder)`; current RSS "
        "is VmRSS and peak RSS is VmHWM of /proc/self/status, the peak of the process's own "
        "address space",
        "",
        "| step | current RSS | peak RSS so far |",
        "|---|---:|---:|",
    ]
    for step, values in result["steps"].items():
        lines.append(f"| {step} | {mib(values['current_rss'])} | {mib(values['peak_rss'])} |")
    lines += [
        "",
        "- loaded: " + ", ".join(
            f"{split} {result['questions'][split]} questions, {result['answers'][split]} answer "
            f"records, {result['distinct_images'][split]} images in {result['seconds'][split]:.1f} s"
            for split in result["questions"]),
        f"- peak RSS {peak / 1000**3:.2f} GB = {mib(peak)} (target < 2 GB: "
        f"{verdict(peak < LOAD_PEAK_TARGET_BYTES)}); baseline after imports "
        f"{mib(result['steps']['after imports']['current_rss'])}",
        f"- `ru_maxrss` of the same process: {mib(result['ru_maxrss'])}. The table uses VmHWM "
        "instead, because on Linux a child process's ru_maxrss also counts the parent's RSS at "
        "the moment the child started. execve carries the replaced address space's peak into it.",
        "",
    ]
    return lines


def format_report(args, machine, load_start, load_end, results, command) -> str:
    lines = [
        "# Scoring benchmarks",
        "",
        "VQA accuracy against OpenFlamingo's own metric code, CIDEr with PTB tokenisation, and the",
        "memory needed to load VQAv2-size annotation files. Each measurement runs in a fresh process.",
        "",
        "Command (from the repository root):",
        "",
        "```",
        command,
        "```",
        "",
        "## Machine and versions",
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    lines += [
        f"- load average (1, 5, 15 min) at start: {load_start}; at end: {load_end}",
        f"- {versions()}",
        f"- seed {args.seed}",
        "",
    ]
    if "vqa" in results:
        lines += vqa_section(args, results["vqa"])
    if "cider" in results:
        lines += cider_section(args, results["cider"])
    if "memory" in results:
        lines += memory_section(args, results["memory"])
    lines.append("Wall times depend on what else runs on the cores; see the load average above.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        if args.child == "vqa-ours":
            result = child_vqa_ours(args.work_dir)
        elif args.child == "vqa-openflamingo":
            result = child_vqa_openflamingo(args.work_dir)
        elif args.child == "cider":
            result = child_cider(args.work_dir, args.captions, args.references, args.seed)
        else:
            result = child_memory(args.work_dir, args.create_images)
        print(json.dumps(result))
        return 0

    command = "python benchmarks/scoring.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    machine = machine_description()
    load_start = load_average()
    print(f"machine: {machine}, load average {load_start}", file=sys.stderr, flush=True)
    temporary = None
    if args.work_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="scoring-benchmark-")
        args.work_dir = Path(temporary.name)
    args.work_dir.mkdir(parents=True, exist_ok=True)

    results: dict[str, Any] = {}
    if "vqa" in args.only:
        results["vqa"] = run_vqa(args)
    if "cider" in args.only:
        results["cider"] = run_cider(args)
    if "memory" in args.only:
        results["memory"] = run_memory(args)

    report = format_report(args, machine, load_start, load_average(), results, command)
    print(report)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report, encoding="utf-8")
    if temporary is not None:
        temporary.cleanup()
    if "vqa" in results and not results["vqa"]["identical"]:
        print("VQA accuracy: our result differs from OpenFlamingo's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
