"""Demonstration samplers: which train examples go into each evaluated item's prompt."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from flamingo_eval.data.example import Example
from flamingo_eval.errors import InputError

DEFAULT_QUERY_SET_SIZE = 2048


def stable_seed(*parts: object) -> int:
    """Derive a 64-bit seed from values, the same in every process and on every platform.

    Python's `hash()` of a string changes between processes, so it cannot seed anything that
    must be reproducible.
    """
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


@dataclass(frozen=True)
class Trial:
    """The examples one trial uses: the evaluated subset and the query set demos come from."""

    seed: int
    eval_examples: list[Example]
    query_set: list[Example]


def draw_trial(
    seed: int,
    eval_examples: list[Example],
    demo_examples: list[Example],
    num_samples: int | None,
    query_set_size: int = DEFAULT_QUERY_SET_SIZE,
) -> Trial:
    """Draw the evaluated subset and the query set of one trial, as OpenFlamingo does.

    OpenFlamingo seeds NumPy's global generator with the trial seed, then draws the test subset
    (`np.random.choice(len(test), num_samples, replace=False)`) and then the query set from the
    train split. The same calls on a `RandomState(seed)` select the same items without touching
    global state. Sizes larger than the split are clamped to the split.
    """
    generator = np.random.RandomState(seed)
    sample_count = len(eval_examples) if num_samples is None else min(num_samples, len(eval_examples))
    eval_indices = generator.choice(len(eval_examples), sample_count, replace=False)
    query_count = min(query_set_size, len(demo_examples))
    query_indices = generator.choice(len(demo_examples), query_count, replace=False)
    return Trial(
        seed=seed,
        eval_examples=[eval_examples[index] for index in eval_indices],
        query_set=[demo_examples[index] for index in query_indices],
    )


class RandomSampler:
    """Random demonstrations from a trial's query set, drawn independently for every item.

    Each item's generator is seeded from a stable hash of (trial seed, item id), so its demos do
    not depend on rank, batch size, process or iteration order. OpenFlamingo instead draws a
    batch's demos from Python's `random` seeded with seed + rank, so its demos change with the
    number of GPUs. Demos for k shots are the first k of one permutation, so the 4-shot demos
    of an item are also the first four of its 8-shot demos.
    """

    name = "random"

    def __init__(self, query_set: list[Example], seed: int):
        self.query_set = query_set
        self.seed = seed

    def demos(self, example: Example, count: int) -> list[Example]:
        if count == 0:
            return []
        if count > len(self.query_set):
            raise InputError(
                f"{count} demonstrations requested but the query set has {len(self.query_set)} "
                "examples; lower --shots or raise --query-set-size"
            )
        generator = np.random.Generator(np.random.PCG64(stable_seed(self.seed, example.id)))
        order = generator.permutation(len(self.query_set))[:count]
        return [self.query_set[index] for index in order]
