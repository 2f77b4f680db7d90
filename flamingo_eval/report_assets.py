"""Pictures for `flamingo-eval report`: score-versus-shots plots and example images as PNG bytes."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from flamingo_eval.errors import InputError
from flamingo_eval.run_reader import Run

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = (256, 256)


def score_plot(group: pd.DataFrame, title: str, metric: str) -> bytes:
    """Plot mean score against shots with one line per run and trial std as error bars.

    `group` contains the comparison rows of one (task, metric, sampler). The figure is drawn on
    matplotlib's Agg canvas directly, so no pyplot backend or display is involved.
    """
    figure = Figure(figsize=(6.0, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, rows in group.groupby("run", sort=False):
        rows = rows.dropna(subset=["mean"]).sort_values("shots")
        if rows.empty:
            continue
        axes.errorbar(
            rows["shots"], rows["mean"], yerr=rows["std"].fillna(0.0),
            marker="o", capsize=3, label=str(label),
        )
    shots = sorted(group["shots"].unique())
    axes.set_xticks(shots)
    axes.set_xlabel("shots")
    axes.set_ylabel(metric)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def thumbnail_png(image: Image.Image) -> bytes:
    image = image.convert("RGB")
    image.thumbnail(THUMBNAIL_SIZE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class ImageFinder:
    """Find a prediction's image: its record's `image_path`, else through the task's loader.

    Records written by the runner carry no image path, so the finder loads the task's eval split
    from the data folder in the run's metadata (`data_dirs`, `task_files`) and looks the sample id
    up. When that fails (data moved, another machine) it logs one warning per task and the report
    shows no image.
    """

    def __init__(self, run: Run):
        self.run = run
        self._examples: dict[str, dict[str, Any] | None] = {}

    def thumbnail(self, task: str, record: dict[str, Any]) -> bytes | None:
        path = record.get("image_path")
        if path:
            try:
                with Image.open(path) as image:
                    return thumbnail_png(image)
            except OSError as error:
                logger.warning("%s: cannot read image of sample %s: %s", path, record.get("sample_id"), error)
                return None
        examples = self._task_examples(task)
        if examples is None:
            return None
        example = examples.get(str(record.get("sample_id")))
        if example is None:
            return None
        try:
            return thumbnail_png(example.image.open())
        except InputError as error:
            logger.warning("image of %s sample %s not available: %s", task, record.get("sample_id"), error)
            return None

    def _task_examples(self, task: str) -> dict[str, Any] | None:
        if task not in self._examples:
            self._examples[task] = self._load_examples(task)
        return self._examples[task]

    def _load_examples(self, task: str) -> dict[str, Any] | None:
        from flamingo_eval import data as data_loading
        from flamingo_eval.registry import load_task

        data_dir = (self.run.metadata.get("data_dirs") or {}).get(task)
        task_file = (self.run.metadata.get("task_files") or {}).get(task)
        if data_dir is None:
            logger.warning("%s: metadata has no data folder for task %s; report shows no images", self.run.path, task)
            return None
        try:
            spec = load_task(task_file if task_file and Path(task_file).is_file() else task)
            examples = data_loading.load_split(spec, spec.data.eval_split, Path(data_dir))
        except (InputError, OSError, ValueError, KeyError) as error:
            logger.warning("task %s: cannot load images from %s (%s); report shows no images", task, data_dir, error)
            return None
        return {example.id: example for example in examples}
