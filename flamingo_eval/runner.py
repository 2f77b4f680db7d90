"""The runner: builds every request of a (task, shots, trial) first, then shards, orders and
batches them through the model, and gathers, scores and writes the records on rank 0."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from tqdm import tqdm

from flamingo_eval.data.example import Example
from flamingo_eval.distributed import DistContext
from flamingo_eval.errors import InputError
from flamingo_eval.journal import RecordKey
from flamingo_eval.metrics import METRICS
from flamingo_eval.models.base import EvalModel, Request
from flamingo_eval.postprocess import apply_postprocess
from flamingo_eval.prompts import PromptOptions, build_request, demo_count
from flamingo_eval.registry import TaskSpec
from flamingo_eval.results import RunDirectory
from flamingo_eval.submission import write_submission
from flamingo_eval.samplers import DEFAULT_QUERY_SET_SIZE, RandomSampler, draw_trial, stable_seed

logger = logging.getLogger(__name__)

AUTO_BATCH_SIZE_START = 32


@dataclass(frozen=True)
class RunOptions:
    """Settings of one evaluation; every field is recorded in the run's metadata.

    `batch_size` None means "auto": start at 32 requests and halve after an out-of-memory error.
    """

    shots: list[int]
    seeds: list[int] = field(default_factory=lambda: [42])
    num_samples: int | None = None
    batch_size: int | None = 8
    query_set_size: int = DEFAULT_QUERY_SET_SIZE
    sampler: str = "random"
    prompt: PromptOptions = field(default_factory=PromptOptions)
    # RICES settings (flamingo_eval.rices.RicesOptions) when sampler is "rices".
    rices: Any = None
    # "retrieved": RICES demos in ascending similarity; "random": shuffled per item and trial.
    demo_order: str = "retrieved"
    # Ranking tasks: draw demos from a support set with this many train examples per class.
    demos_per_class: int | None = None
    # Ranking tasks: average class scores over up to this many orders of each item's demos.
    prompt_ensembles: int = 1
    # False batches items in arrival order (the plain path benchmarks compare against).
    length_sorted_batches: bool = True
    # Worker processes that load and preprocess images ahead of the model (DataLoader workers).
    # 0 loads the next batch's images on background threads of this process instead.
    image_workers: int = 0


@dataclass(frozen=True)
class PendingItem:
    """An evaluated item with its demonstrations and the request built from them."""

    example: Example
    demos: list[Example]
    request: Request


# A hook that tests use to alter requests just before the model call (for example, to misalign
# images and prompts on purpose). It is None in every normal run.
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
        finished: dict[RecordKey, dict[str, Any]] | None = None,
        dist_context: DistContext | None = None,
        request_hook: RequestHook | None = None,
    ):
        self.task = task
        self.model = model
        self.options = options
        self.run_dir = run_dir
        self.class_names = class_names
        self.finished = finished or {}
        self.dist = dist_context or DistContext()
        self.request_hook = request_hook
        self.batch_size = options.batch_size or AUTO_BATCH_SIZE_START

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
        progress = tqdm(
            total=total, desc=self.task.name, unit="item", dynamic_ncols=True,
            disable=not self.dist.is_main,
        )
        rices_index = None
        if self.options.sampler == "rices":
            from flamingo_eval.rices import load_rices_index

            # Rank 0 builds any missing feature cache first; the other ranks then read it.
            if not self.dist.is_main:
                self.dist.barrier()
            rices_index = load_rices_index(self.task, demo_examples, eval_examples, self.options.rices)
            if self.dist.is_main:
                self.dist.barrier()
        try:
            for trial in trials:
                sampler = self._sampler(trial, demo_examples, rices_index)
                for shots in self.options.shots:
                    self._run_group(trial.seed, shots, trial.eval_examples, sampler, progress)
        finally:
            progress.close()

    def _sampler(self, trial, demo_examples: list[Example], rices_index):
        """Build the trial's demonstration sampler (random from the query set, or RICES)."""
        support = None
        if self.options.demos_per_class is not None:
            from flamingo_eval.rices import class_balanced_indices

            support = class_balanced_indices(
                demo_examples, self.options.demos_per_class, trial.seed, len(self.class_names or [])
                or None,
            )
        if rices_index is None:
            pool = trial.query_set if support is None else [demo_examples[i] for i in support]
            return RandomSampler(pool, trial.seed)

        from flamingo_eval.rices import RicesSampler

        index = rices_index if support is None else rices_index.restrict_pool(support)
        sampler = RicesSampler(index, trial.seed, self.options.demo_order)
        max_demos = max(demo_count(shots, self.options.prompt) for shots in self.options.shots)
        sampler.prepare(trial.eval_examples, max_demos)
        return sampler

    def _run_group(self, seed: int, shots: int, examples: list[Example], sampler, progress) -> None:
        count = demo_count(shots, self.options.prompt)
        pending = []
        for example in examples:
            demos = sampler.demos(example, count)
            request = build_request(self.task.prompt, example, demos, shots)
            pending.append(PendingItem(example, demos, request))

        done = {}
        for item in pending:
            key = (self.task.name, shots, seed, self.options.sampler, item.example.id)
            if key in self.finished:
                done[item.example.id] = self.finished[key]
        todo = [item for item in pending if item.example.id not in done]
        logger.info(
            "task %s: %d shots, trial seed %d: %d items, %d already finished",
            self.task.name, shots, seed, len(pending), len(done),
        )
        progress.update(len(done))

        records = []
        batches = self._batches(self.dist.shard(todo))
        prefetch = getattr(self.model, "prefetch", None)
        plan_images = getattr(self.model, "plan_images", None)
        if plan_images is not None and self.options.image_workers > 0:
            plan_images([[item.request for item in batch] for batch in batches], self.options.image_workers)
            prefetch = None
        for index, batch in enumerate(batches):
            if prefetch is not None and index + 1 < len(batches):
                prefetch([item.request for item in batches[index + 1]])
            batch_records = self._run_batch_adaptive(batch, seed, shots)
            self.run_dir.append_journal(batch_records)
            records.extend(batch_records)
            progress.update(min(len(batch) * self.dist.world_size, progress.total - progress.n))

        gathered = self.dist.gather(records)
        if not self.dist.is_main:
            return
        by_id = dict(done)
        for rank_records in gathered:
            for record in rank_records:
                by_id.setdefault(record["sample_id"], record)
        ordered = [dict(by_id[item.example.id]) for item in pending]
        for record in ordered:
            record.pop("scores", None)
        trial_rows = self._score(ordered, seed, shots)
        self.run_dir.add_scored(ordered, trial_rows)
        if "vqa_accuracy" in self.task.metric_names and all(r["target"] is None for r in ordered):
            # An unannotated split (VQAv2 or VizWiz test-dev) is scored by EvalAI instead.
            paths = write_submission(self.task, ordered, self.run_dir.path)
            logger.info("wrote EvalAI submission files: %s", ", ".join(map(str, paths)))

    def _batches(self, items: list[PendingItem]) -> list[list[PendingItem]]:
        """Group items into batches of similar image count and prompt length.

        Sorting before batching keeps padding low; results do not depend on batch composition,
        and the records are put back in their original order after gathering.
        """
        ordered = items
        if self.options.length_sorted_batches:
            ordered = sorted(
                items,
                key=lambda item: (len(item.request.images), len(item.request.prompt), item.example.id),
                reverse=True,
            )
        return [ordered[start : start + self.batch_size] for start in range(0, len(ordered), self.batch_size)]

    def _run_batch_adaptive(self, batch: list[PendingItem], seed: int, shots: int) -> list[dict[str, Any]]:
        """Run a batch; with `--batch-size auto`, split it after an out-of-memory error."""
        try:
            return self._run_batch(batch, seed, shots)
        except torch.OutOfMemoryError:
            if self.options.batch_size is not None:
                raise InputError(
                    f"out of memory at batch size {len(batch)} (task {self.task.name}, {shots} "
                    "shots); lower --batch-size or pass --batch-size auto"
                ) from None
            if len(batch) == 1:
                raise InputError(
                    f"out of memory on a single request (task {self.task.name}, {shots} shots); "
                    "use fewer shots, a lower precision or a larger device"
                ) from None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.batch_size = max(1, math.ceil(len(batch) / 2))
        logger.warning("out of memory at batch size %d; retrying at %d", len(batch), self.batch_size)
        half = self.batch_size
        return self._run_batch_adaptive(batch[:half], seed, shots) + self._run_batch_adaptive(
            batch[half:], seed, shots
        )

    def _run_batch(self, batch: list[PendingItem], seed: int, shots: int) -> list[dict[str, Any]]:
        requests = [item.request for item in batch]
        if self.request_hook is not None:
            requests = self.request_hook(requests)
        if self.task.kind == "generation":
            outputs = self._generate(requests)
        else:
            outputs = self._rank(requests, self._ensemble_requests(batch, seed, shots))
        return [
            {
                "task": self.task.name,
                "shots": shots,
                "seed": seed,
                "sampler": self.options.sampler,
                "sample_id": item.example.id,
                "image_path": None if item.example.image.path is None else str(item.example.image.path.resolve()),
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

    def _ensemble_requests(self, batch: list[PendingItem], seed: int, shots: int) -> list[list[Request]]:
        """Return each item's extra requests for prompt ensembling: its demos in other orders.

        The orders are drawn per item from a stable hash of (trial seed, item id), so they do not
        depend on batching; the demos as sampled are always the first order.
        """
        count = self.options.prompt_ensembles
        extra = []
        for item in batch:
            orders = distinct_orders(len(item.demos), count, stable_seed(seed, item.example.id, "ensemble"))
            extra.append(
                [
                    build_request(self.task.prompt, item.example, [item.demos[i] for i in order], shots)
                    for order in orders[1:]
                ]
            )
        return extra

    def _rank(self, requests: list[Request], ensembles: list[list[Request]]) -> list[dict[str, Any]]:
        extra = [request for item_requests in ensembles for request in item_requests]
        all_scores = self.model.rank(requests + extra, self.class_names)
        scores = all_scores[: len(requests)]
        if extra:
            # Average each class's score over the item's demo orders, as OpenFlamingo's
            # prompt ensembling averages log-probabilities.
            position = len(requests)
            averaged = []
            for row, item_requests in zip(scores, ensembles):
                rows = [row, *all_scores[position : position + len(item_requests)]]
                position += len(item_requests)
                averaged.append([sum(values) / len(rows) for values in zip(*rows)])
            scores = averaged
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


def distinct_orders(length: int, count: int, seed: int) -> list[tuple[int, ...]]:
    """Return up to `count` distinct orders of range(length), the identity first.

    Fewer are returned when length! < count (OpenFlamingo uses min(6, length!) orders).
    """
    import itertools

    import numpy as np

    count = min(count, math.factorial(length))
    orders = [tuple(range(length))]
    if count <= 1:
        return orders
    if math.factorial(length) <= 720:
        others = [order for order in itertools.permutations(range(length)) if order != orders[0]]
        generator = np.random.Generator(np.random.PCG64(seed))
        picked = generator.choice(len(others), size=count - 1, replace=False)
        return orders + [others[index] for index in sorted(picked)]
    generator = np.random.Generator(np.random.PCG64(seed))
    while len(orders) < count:
        order = tuple(int(i) for i in generator.permutation(length))
        if order not in orders:
            orders.append(order)
    return orders


def positive_probability(class_scores: list[float], positive_index: int) -> float:
    """Probability of the positive class from a softmax over the class names' scores.

    OpenFlamingo scores HatefulMemes by the probability of "yes" computed the same way.
    """
    top = max(class_scores)
    exponentials = [math.exp(score - top) for score in class_scores]
    return exponentials[positive_index] / sum(exponentials)
