"""Hugging Face `datasets` as a source of the same examples that the file loaders return.

A task file's `data.hf` section gives the dataset's location and the meaning of its columns:

    hf:
      path: my-org/vqav2          # a hub id, or a folder (save_to_disk output or data files)
      # data_files: {val: vqav2/val-*.parquet}   # or parquet files (globs allowed)
      name: null                  # the dataset's configuration, if it has several
      revision: null              # a hub branch, tag or commit
      splits: {train: train, val: validation}    # our split -> the dataset's split
      columns: {id: question_id, image_id: image_id}   # our name -> the dataset's column

A split's entry in `splits` may also be a mapping with its own path, data_files, split, name,
revision or columns. Columns default to our own names (id, image, question, answers,
captions, label, text, image_id). The image column may be an `Image` feature (its bytes are
read lazily, row by row) or a string path. Folders, files and image paths are relative to the
data folder. `datasets` honours HF_DATASETS_OFFLINE and HF_HUB_OFFLINE, and this module never
passes trust_remote_code.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Callable

from flamingo_eval.data import files
from flamingo_eval.data.example import Example, ImageRef
from flamingo_eval.errors import InputError
from flamingo_eval.registry import TaskSpec

logger = logging.getLogger(__name__)

# Returns the row's ImageRef, given the image's key.
ImageFactory = Callable[[Any], ImageRef]

SOURCE_KEYS = ("path", "data_files", "name", "revision", "split", "columns", "cache_dir")
BATCH_SIZE = 4096


def load_hf_split(task: TaskSpec, split: str, data_dir: Path) -> list[Example]:
    """Load one split of a task from its `data.hf` source, as the task's file loader would."""
    if task.data.hf is None:
        raise InputError(f"task {task.name}: the task file has no 'data.hf' section for source 'hf'")
    source = _split_source(task, split)
    builder = ROW_BUILDERS.get(task.data.loader)
    if builder is None:
        raise InputError(
            f"task {task.name}: loader {task.data.loader!r} has no Hugging Face mapping; "
            f"expected one of {', '.join(ROW_BUILDERS)}"
        )
    dataset = _open_dataset(source, data_dir, task.name, split)
    columns = {**DEFAULT_COLUMNS, **source.get("columns", {})}
    context = _BuildContext(task, columns, data_dir, dataset)
    if columns["id"] not in dataset.column_names:
        raise InputError(
            f"task {task.name}: the dataset has no id column {columns['id']!r}; map it in "
            f"data.hf.columns (columns: {', '.join(dataset.column_names)})"
        )

    examples = []
    # Image bytes stay in the dataset until an image is opened.
    skipped = {context.image_column} if context.has_image_feature else set()
    for index, row in enumerate(_iter_rows(dataset, columns, skipped)):
        image = functools.partial(context.image, index, row)
        examples.append(builder(row, image, context))
    _check_unique_ids(examples, task.name, split)
    logger.info("loaded %d examples of split %s from the Hugging Face dataset", len(examples), split)
    return examples


def _split_source(task: TaskSpec, split: str) -> dict[str, Any]:
    """Merge the top-level `data.hf` keys with the split's own entry."""
    hf = dict(task.data.hf or {})
    unknown = set(hf) - set(SOURCE_KEYS) - {"splits"}
    if unknown:
        raise InputError(f"task {task.name}: unknown keys in data.hf: {', '.join(sorted(unknown))}")
    entry = (hf.pop("splits", None) or {}).get(split, split)
    source = {key: value for key, value in hf.items() if value is not None}
    if isinstance(entry, str):
        source["split"] = entry
    elif isinstance(entry, dict):
        unknown = set(entry) - set(SOURCE_KEYS)
        if unknown:
            raise InputError(
                f"task {task.name}: unknown keys in data.hf.splits.{split}: {', '.join(sorted(unknown))}"
            )
        source.update({key: value for key, value in entry.items() if value is not None})
        source.setdefault("split", split)
    else:
        raise InputError(f"task {task.name}: data.hf.splits.{split} must be a split name or a mapping")
    if isinstance(source.get("data_files"), dict):
        source["data_files"] = source["data_files"].get(split)
    if not source.get("path") and not source.get("data_files"):
        raise InputError(f"task {task.name}: data.hf needs 'path' or 'data_files' for split {split!r}")
    return source


def _open_dataset(source: dict[str, Any], data_dir: Path, task_name: str, split: str):
    """Open the split as a `datasets.Dataset`, from parquet files, a saved folder or the hub."""
    import datasets

    where = source.get("data_files") or source.get("path")
    try:
        if source.get("data_files"):
            files = source["data_files"]
            files = [files] if isinstance(files, str) else list(files)
            dataset = datasets.load_dataset(
                "parquet",
                data_files={"data": [str(data_dir / name) for name in files]},
                split="data",
                cache_dir=source.get("cache_dir"),
            )
        elif _saved_dataset_folder(source["path"], data_dir) is not None:
            dataset = datasets.load_from_disk(str(_saved_dataset_folder(source["path"], data_dir)))
            if isinstance(dataset, datasets.DatasetDict):
                if source["split"] not in dataset:
                    raise InputError(
                        f"{source['path']}: no split {source['split']!r}; the saved dataset has "
                        f"{', '.join(dataset)}"
                    )
                dataset = dataset[source["split"]]
        else:
            local_folder = data_dir / source["path"]
            dataset = datasets.load_dataset(
                str(local_folder) if local_folder.is_dir() else source["path"],
                name=source.get("name"),
                split=source["split"],
                revision=source.get("revision"),
                cache_dir=source.get("cache_dir"),
            )
    except (OSError, ValueError, ConnectionError, datasets.exceptions.DatasetsError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(
            f"task {task_name}, split {split!r}: cannot load Hugging Face dataset {where} "
            f"({type(error).__name__}: {first_line}); check data.hf in the task file, and the "
            "hub cache when HF_HUB_OFFLINE is set"
        ) from None
    return dataset


def _saved_dataset_folder(path: str, data_dir: Path) -> Path | None:
    """Return the folder of a dataset written by save_to_disk, or None for a hub id."""
    for candidate in (data_dir / path, Path(path)):
        if (candidate / "dataset_dict.json").is_file() or (candidate / "state.json").is_file():
            return candidate
    return None


def _iter_rows(dataset, columns: dict[str, str], skipped: set[str]):
    """Yield the rows as dicts of the mapped columns, leaving out the `skipped` columns."""
    selected = [column for column in set(columns.values()) if column in dataset.column_names]
    selected = [column for column in selected if column not in skipped]
    table = dataset.select_columns(selected)
    for batch in table.iter(batch_size=BATCH_SIZE):
        names = list(batch)
        for values in zip(*(batch[name] for name in names)):
            yield dict(zip(names, values))


class _BuildContext:
    """Column names, class names and image access shared by the row builders."""

    def __init__(self, task: TaskSpec, columns: dict[str, str], data_dir: Path, dataset):
        import datasets

        self.task = task
        self.columns = columns
        self.data_dir = data_dir
        self.image_column = columns["image"]
        if self.image_column not in dataset.column_names:
            raise InputError(
                f"task {task.name}: the dataset has no image column {self.image_column!r}; "
                f"map it in data.hf.columns (columns: {', '.join(dataset.column_names)})"
            )
        feature = dataset.features[self.image_column]
        self._images = None
        # Identifies this dataset's rows in vision-feature cache keys (datasets' own content hash).
        self._dataset_fingerprint = getattr(dataset, "_fingerprint", None) or str(id(dataset))
        self.has_image_feature = isinstance(feature, datasets.Image)
        if self.has_image_feature:
            self._images = dataset.select_columns([self.image_column]).cast_column(
                self.image_column, datasets.Image(decode=False)
            )
        self._class_names: list[str] | None = None
        label = dataset.features.get(columns["label"])
        if isinstance(label, datasets.ClassLabel):
            self._class_names = list(label.names)

    def value(self, row: dict[str, Any], name: str, required: bool = True) -> Any:
        """Return the row's value of our column `name`, mapped through data.hf.columns."""
        column = self.columns[name]
        if column not in row:
            if not required:
                return None
            raise InputError(
                f"task {self.task.name}: the dataset has no column {column!r} for {name!r}; "
                "map it in data.hf.columns"
            )
        return row[column]

    def image(self, index: int, row: dict[str, Any], key: Any) -> ImageRef:
        """Return a lazy reference to the image of row `index`, identified by str(key)."""
        if self._images is not None:
            load = functools.partial(_image_bytes, self._images, self.image_column, index)
            source_id = f"{self._dataset_fingerprint}/{index}"
            return ImageRef(key=str(key), load_bytes=load, source_id=source_id)
        path = row.get(self.image_column)
        if not isinstance(path, str) or not path:
            raise InputError(
                f"task {self.task.name}: row {index} has image {path!r}; expected an Image "
                "feature or a file path"
            )
        if not files.file_exists(self.data_dir / path):
            raise InputError(f"{self.data_dir / path}: image file not found for row {index} (key {key})")
        return ImageRef(key=str(key), path=self.data_dir / path)

    def class_names(self) -> list[str]:
        """Return the label names: the ClassLabel's names, else the task's class names.

        The task's names are those the file loader would use (an inline list, or the data
        folder's classnames.txt, or ImageNet's 1000 names).
        """
        if self._class_names is None:
            from flamingo_eval.data import load_class_names  # the package imports this module

            self._class_names = load_class_names(self.task, self.data_dir)
        return self._class_names


def _image_bytes(images, column: str, index: int) -> bytes:
    value = images[index][column]
    if value.get("bytes") is not None:
        return value["bytes"]
    if value.get("path"):
        return Path(value["path"]).read_bytes()
    raise InputError(f"row {index}: the image column {column!r} contains neither bytes nor a path")


def _vqa_row(row: dict[str, Any], image: ImageFactory, context: _BuildContext) -> Example:
    example_id = str(context.value(row, "id"))
    image_id = context.value(row, "image_id", required=False)
    image_id = example_id if image_id is None else image_id
    answers = context.value(row, "answers", required=False)
    target = None if answers is None else [
        _answer_record(answer, position) for position, answer in enumerate(answers)
    ]
    fields = {
        "question": context.value(row, "question"),
        "answer": target[0]["answer"] if target else "",
        "image_id": image_id,
    }
    return Example(id=example_id, image=image(image_id), fields=fields, target=target or None)


def _answer_record(answer: Any, position: int) -> dict[str, Any]:
    """Return an answer record as the VQA files write it.

    Arrow gives every record of a column the same keys, filling absent ones with None, so keys
    whose value is None are dropped. A plain string becomes {"answer": string, "answer_id":
    position + 1}: without distinct ids, VQA accuracy drops all records equal to the held-out
    one together, and ten identical correct answers would score 0.
    """
    if isinstance(answer, dict):
        return {key: value for key, value in answer.items() if value is not None}
    return {"answer": answer, "answer_id": position + 1}


def _caption_row(row: dict[str, Any], image: ImageFactory, context: _BuildContext) -> Example:
    example_id = str(context.value(row, "id"))
    image_id = context.value(row, "image_id", required=False)
    image_id = example_id if image_id is None else image_id
    captions = list(context.value(row, "captions"))
    if not captions:
        raise InputError(f"task {context.task.name}: item {example_id} has no captions")
    fields = {"caption": captions[0], "image_id": image_id}
    return Example(id=example_id, image=image(example_id), fields=fields, target=captions)


def _classification_row(row: dict[str, Any], image: ImageFactory, context: _BuildContext) -> Example:
    example_id = str(context.value(row, "id"))
    label = context.value(row, "label")
    names = context.class_names()
    if not isinstance(label, int) or not 0 <= label < len(names):
        raise InputError(
            f"task {context.task.name}: item {example_id} has label {label!r}; expected an "
            f"integer from 0 to {len(names) - 1}"
        )
    fields = {"class_name": names[label]}
    return Example(id=example_id, image=image(example_id), fields=fields, target=label)


def _meme_row(row: dict[str, Any], image: ImageFactory, context: _BuildContext) -> Example:
    example_id = str(context.value(row, "id"))
    label = context.value(row, "label", required=False)
    if label is not None and label not in (0, 1):
        raise InputError(f"task {context.task.name}: meme {example_id} has label {label!r}; expected 0 or 1")
    label = None if label is None else int(label)
    fields = {"ocr": context.value(row, "text"), "class_name": "" if label is None else ("no", "yes")[label]}
    return Example(id=example_id, image=image(example_id), fields=fields, target=label)


def _check_unique_ids(examples: list[Example], task_name: str, split: str) -> None:
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise InputError(
                f"task {task_name}, split {split!r}: duplicate id {example.id} in the Hugging Face "
                "dataset; map data.hf.columns.id to a unique column"
            )
        seen.add(example.id)


DEFAULT_COLUMNS = {
    "id": "id",
    "image": "image",
    "image_id": "image_id",
    "question": "question",
    "answers": "answers",
    "captions": "captions",
    "label": "label",
    "text": "text",
}

ROW_BUILDERS: dict[str, Callable[[dict[str, Any], ImageFactory, _BuildContext], Example]] = {
    "vqa": _vqa_row,
    "karpathy": _caption_row,
    "imagefolder": _classification_row,
    "hateful_memes": _meme_row,
}
