"""The runner: builds every request of a (task, shots, trial) first, then batches them through
the model, post-processes, scores, and hands records to the run folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from tqdm import tqdm

from flamingo_eval.data.example import Example
from flamingo_eval.metrics import METRICS
from flamingo_eval.models.base import EvalModel, Request
from flamingo_eval.postprocess import apply_postprocess
from flamingo_eval.prompts import PromptOptions, build_request, demo_count
from flamingo_eval.registry import TaskSpec
from flamingo_eval.results import RunDirectory
from flamingo_eval.samplers import DEFAULT_QUERY_SET_SIZE, RandomSampler, draw_trial

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """What to evaluate and how; every field is recorded in the run's metadata."""

    shots: list[int]
    seeds: list[int] = field(default_factory=lambda: [42])
    num_samples: int | None = None
    batch_size: int = 8
    query_set_size: int = DEFAULT_QUERY_SET_SIZE
    sampler: str = "random"
    prompt: PromptOptions = field(default_factory=PromptOptions)


@dataclass(frozen=True)
class PendingItem:
    """An evaluated item with its demonstrations and the request built from them."""

    example: Example
    demos: list[Example]
    request: Request


# A hook tests use to alter requests just before the model sees them (for example to misalign
# images and prompts on purpose); None in every normal run.
RequestHook = Callable[[list[Request]], list[Request]]


class TaskRunner:
    """Evaluates one task on one model for every trial seed and shot count."""

    def __init__(
        self,
        task: TaskSpec,
        model: EvalModel,
        options: RunOptions,
        run_dir: RunDirectory,
        *,
        class_names: list[str] | None = None,
        request_hook: RequestHook | None = None,
    ):
        self.task = task
        self.model = model
        self.options = options
        self.run_dir = run_dir
        self.class_names = class_names
        self.request_hook = request_hook

    def run(self, demo_examples: list[Example], eval_examples: list[Example]) -> None:
        trials = [
            draw_trial(
                seed,
                eval_examples,
                demo_examples,
                self.options.num_samples,
                self.options.query_set_size,
            )
            for seed in self.options.seeds
        ]
        total = sum(len(trial.eval_examples) for trial in trials) * len(self.options.shots)
        progress = tqdm(total=total, desc=self.task.name, unit="item", dynamic_ncols=True)
        try:
            for trial in trials:
                sampler = RandomSampler(trial.query_set, trial.seed)
                for shots in self.options.shots:
                    self._run_group(trial.seed, shots, trial.eval_examples, sampler, progress)
        finally:
            progress.close()

    def _run_group(self, seed: int, shots: int, examples: list[Example], sampler, progress) -> None:
        logger.info(
            "task %s: %d shots, trial seed %d, %d items", self.task.name, shots, seed, len(examples)
        )
        count = demo_count(shots, self.options.prompt)
        pending = []
        for example in examples:
            demos = sampler.demos(example, count)
            request = build_request(self.task.prompt, example, demos, shots)
            pending.append(PendingItem(example, demos, request))

        records = []
        batch_size = self.options.batch_size
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            batch_records = self._run_batch(batch, seed, shots)
            self.run_dir.append_journal(batch_records)
            records.extend(batch_records)
            progress.update(len(batch))

        trial_rows = self._score(records, seed, shots)
        self.run_dir.add_scored(records, trial_rows)

    def _run_batch(self, batch: list[PendingItem], seed: int, shots: int) -> list[dict[str, Any]]:
        requests = [item.request for item in batch]
        if self.request_hook is not None:
            requests = self.request_hook(requests)
        if self.task.kind == "generation":
            outputs = self._generate(requests)
        else:
            outputs = self._rank(requests)
        return [
            {
                "task": self.task.name,
                "shots": shots,
                "seed": seed,
                "sampler": self.options.sampler,
                "sample_id": item.example.id,
                "image_path": None if item.example.image.path is None else str(item.example.image.path),
                "fields": {k: v for k, v in item.example.fields.items() if k != "answer"},
                "demo_ids": [demo.id for demo in item.demos],
                "prompt": item.request.prompt,
                "target": item.example.target,
                **output,
            }
            for item, output in zip(batch, outputs)
        ]

    def _generate(self, requests: list[Request]) -> list[dict[str, Any]]:
        settings = self.task.generation
        generations = self.model.generate(
            requests,
            num_beams=settings.num_beams,
            max_new_tokens=settings.max_new_tokens,
            min_new_tokens=settings.min_new_tokens,
            length_penalty=settings.length_penalty,
        )
        return [
            {
                "raw_output": generation.text,
                "output_logprob": generation.logprob,
                "prediction": apply_postprocess(self.task.postprocess, generation.text),
            }
            for generation in generations
        ]

    def _rank(self, requests: list[Request]) -> list[dict[str, Any]]:
        scores = self.model.rank(requests, self.class_names)
        outputs = []
        for class_scores in scores:
            order = sorted(range(len(class_scores)), key=lambda index: (-class_scores[index], index))
            output = {
                "prediction": order[0],
                "class_name": self.class_names[order[0]],
                "top_k": order[:5],
                "class_scores": class_scores if len(class_scores) <= 10 else None,
            }
            positive = self.task.ranking.positive_class
            if positive is not None:
                output["positive_score"] = positive_probability(
                    class_scores, self.class_names.index(positive)
                )
            outputs.append(output)
        return outputs

    def _score(self, records: list[dict[str, Any]], seed: int, shots: int) -> list[dict[str, Any]]:
        trial_rows = []
        for metric in self.task.metrics:
            options = {key: value for key, value in metric.items() if key != "name"}
            result = METRICS[metric["name"]](records, options)
            if result.per_sample is not None:
                for record in records:
                    value = result.per_sample.get(record["sample_id"])
                    if value is not None:
                        record.setdefault("scores", {})[metric["name"]] = value
            trial_rows.append(
                {
                    "task": self.task.name,
                    "shots": shots,
                    "sampler": self.options.sampler,
                    "seed": seed,
                    "metric": metric["name"],
                    "value": result.value,
                    "num_samples": len(records),
                }
            )
            logger.info(
                "task %s, %d shots, seed %d: %s = %s",
                self.task.name, shots, seed, metric["name"], result.value,
            )
        return trial_rows


def positive_probability(class_scores: list[float], positive_index: int) -> float:
    """Probability of the positive class, normalised over the class names' scores.

    OpenFlamingo ranks HatefulMemes by the probability of "yes" from a softmax over the two
    class names' log-likelihoods; ROC-AUC only needs the order, which this preserves.
    """
    import math

    top = max(class_scores)
    exponentials = [math.exp(score - top) for score in class_scores]
    return exponentials[positive_index] / sum(exponentials)
