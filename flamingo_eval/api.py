"""Python API: evaluate a model object, for example from a training loop, and get the summary.

`evaluate_model` runs the same code as `flamingo-eval run` (`flamingo_eval.evaluate.evaluate`)
and writes the same run folder, so its DataFrame equals the command line's summary for the same
arguments.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from flamingo_eval.errors import InputError
from flamingo_eval.models.base import EvalModel
from flamingo_eval.registry import TaskSpec

logger = logging.getLogger(__name__)


def evaluate_model(
    model: EvalModel | str,
    tasks: Sequence[str | Path | TaskSpec],
    shots: Sequence[int] | None = None,
    *,
    seeds: Sequence[int] = (42,),
    num_samples: int | None = None,
    batch_size: int = 8,
    query_set_size: int = 2048,
    zero_shot_text_demos: int = 2,
    data_dir: str | Path = "data",
    output_dir: str | Path | None = None,
    results_dir: str | Path = "results",
    device: str = "cpu",
    precision: str = "fp32",
) -> pd.DataFrame:
    """Evaluate `model` on `tasks` and return the summary table; the run folder's path is in
    `summary.attrs["run_path"]`.

    `model` is an EvalModel (wrap an open_flamingo `Flamingo` in
    `flamingo_eval.models.flamingo_adapter.FlamingoModel`) or a name `load_model` accepts; then
    `device` and `precision` apply. `tasks` are task names, task file paths or TaskSpecs.
    `shots` defaults to every shot count the tasks list, as on the command line. The other
    arguments mirror the `flamingo-eval run` options of the same names.

    Torch modules held as attributes of an EvalModel are put in eval mode for the run and
    returned to their previous training mode afterwards.
    """
    from flamingo_eval.evaluate import evaluate
    from flamingo_eval.models import load_model
    from flamingo_eval.prompts import PromptOptions
    from flamingo_eval.registry import load_task
    from flamingo_eval.runner import RunOptions

    task_specs = [task if isinstance(task, TaskSpec) else load_task(str(task)) for task in tasks]
    if not task_specs:
        raise InputError("evaluate_model: no tasks given; pass tasks=['okvqa', ...]")
    shot_list = list(shots) if shots is not None else sorted({s for t in task_specs for s in t.shots})
    _check_options(shot_list, list(seeds), num_samples, batch_size)
    options = RunOptions(
        shots=shot_list,
        seeds=list(seeds),
        num_samples=num_samples,
        batch_size=batch_size,
        query_set_size=query_set_size,
        prompt=PromptOptions(zero_shot_text_demos=zero_shot_text_demos),
    )
    if isinstance(model, str):
        name = model
        model_or_factory = lambda: load_model(name, device=device, precision=precision)  # noqa: E731
    elif isinstance(model, EvalModel):
        model_or_factory = model
    else:
        raise InputError(
            f"evaluate_model: model is a {type(model).__name__}; pass an EvalModel or a preset name"
        )

    modes = _training_modes(model)
    for module, _ in modes:
        module.eval()
    try:
        summary, run_path = evaluate(
            model_or_factory,
            task_specs,
            options,
            data_root=Path(data_dir),
            output_dir=Path(output_dir) if output_dir is not None else None,
            results_dir=Path(results_dir),
            command=["flamingo_eval.api.evaluate_model", *(task.name for task in task_specs)],
        )
    finally:
        for module, training in modes:
            module.train(training)
    summary.attrs["run_path"] = str(run_path)
    return summary


def _check_options(shots: list[int], seeds: list[int], num_samples: int | None, batch_size: int) -> None:
    if not shots or any(value < 0 for value in shots):
        raise InputError(f"evaluate_model: shots {shots} must be a non-empty list of integers >= 0")
    if not seeds:
        raise InputError("evaluate_model: seeds must list at least one trial seed")
    if batch_size < 1:
        raise InputError(f"evaluate_model: batch_size {batch_size} must be at least 1")
    if num_samples is not None and num_samples < 1:
        raise InputError(f"evaluate_model: num_samples {num_samples} must be at least 1")


def _training_modes(model) -> list[tuple[torch.nn.Module, bool]]:
    """Return the torch modules stored as attributes of an adapter, with their training flags."""
    if not isinstance(model, EvalModel):
        return []
    return [
        (value, value.training)
        for value in vars(model).values()
        if isinstance(value, torch.nn.Module)
    ]
