"""Class-balanced support sets for ranking tasks: the same number of demo examples per class.

Flamingo's ImageNet results with RICES retrieve from such a support set (5 examples per class)
rather than from the whole train split.
"""

from __future__ import annotations

import numpy as np

from flamingo_eval.data.example import Example
from flamingo_eval.errors import InputError
from flamingo_eval.samplers import stable_seed


def class_balanced_indices(
    examples: list[Example],
    demos_per_class: int,
    seed: int,
    num_classes: int | None = None,
) -> list[int]:
    """Pick `demos_per_class` examples of every class; return their indices in ascending order.

    Targets must be integer class indices. Each class draws without replacement from its own
    generator, seeded by a stable hash of (seed, "support_set", class), so one class's picks
    do not depend on the other classes. With `num_classes`, every class 0..num_classes-1 must
    be present. Raises InputError for a non-integer target or a class with too few examples.
    """
    if demos_per_class < 1:
        raise InputError(f"--demos-per-class {demos_per_class} must be at least 1")
    members: dict[int, list[int]] = {}
    for index, example in enumerate(examples):
        target = example.target
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
            raise InputError(
                f"demo example {example.id}: target {target!r} is not a class index; "
                "class-balanced support sets need a ranking task"
            )
        members.setdefault(int(target), []).append(index)

    classes = sorted(members) if num_classes is None else list(range(num_classes))
    selected = []
    for class_index in classes:
        candidates = members.get(class_index, [])
        if len(candidates) < demos_per_class:
            raise InputError(
                f"class {class_index} has {len(candidates)} demo examples, fewer than "
                f"--demos-per-class {demos_per_class}; lower --demos-per-class"
            )
        generator = np.random.Generator(
            np.random.PCG64(stable_seed(seed, "support_set", class_index))
        )
        picks = generator.choice(len(candidates), demos_per_class, replace=False)
        selected.extend(candidates[pick] for pick in picks)
    return sorted(selected)


def class_balanced_support_set(
    examples: list[Example],
    demos_per_class: int,
    seed: int,
    num_classes: int | None = None,
) -> list[Example]:
    """Return the support set chosen by `class_balanced_indices`, in the examples' order."""
    indices = class_balanced_indices(examples, demos_per_class, seed, num_classes)
    return [examples[index] for index in indices]
