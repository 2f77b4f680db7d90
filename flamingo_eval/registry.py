"""Task files: find them, load them safely and validate them into a typed `TaskSpec`.

Built-in tasks live in the repository's `tasks/` folder, one YAML file per benchmark. `--task`
takes a registered name or the path of a user's own task file.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flamingo_eval.errors import InputError

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"
TASK_KINDS = ("generation", "ranking")
TASK_FIELDS = {
    "name", "description", "kind", "data", "prompt", "generation", "ranking", "postprocess",
    "metrics", "shots", "extra",
}


@dataclass(frozen=True)
class DataSpec:
    """Source of a task's examples.

    `loader` names a function in `flamingo_eval.data.LOADERS`. `splits` maps a split name to the
    loader's settings for it (file names relative to the data folder, image folder, ...).
    """

    loader: str
    splits: dict[str, dict[str, Any]]
    demo_split: str
    eval_split: str
    hf: dict[str, Any] | None = None


@dataclass(frozen=True)
class PromptSpec:
    """Prompt templates, filled with `str.format` from an example's fields.

    `demo` is a demonstration with its answer; `query` the evaluated item with the answer left
    empty. `separator` follows every demonstration, the last one included.
    """

    demo: str
    query: str
    separator: str = ""


@dataclass(frozen=True)
class GenerationSpec:
    """Decoding settings of a generation task (beam search, as OpenFlamingo decodes)."""

    num_beams: int = 3
    length_penalty: float = 0.0
    max_new_tokens: int = 5
    min_new_tokens: int = 0

    def __post_init__(self):
        minimums = {"num_beams": 1, "max_new_tokens": 1, "min_new_tokens": 0}
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"generation.{name} must be an integer >= {minimum}, not {value!r}")
        if not isinstance(self.length_penalty, (int, float)) or isinstance(self.length_penalty, bool):
            raise ValueError(f"generation.length_penalty must be a number, not {self.length_penalty!r}")


@dataclass(frozen=True)
class RankingSpec:
    """Settings of a task scored by ranking class names by log-likelihood.

    `class_names` is either an inline list or the name of a list the loader provides.
    """

    class_names: list[str] | str
    positive_class: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark, as declared in its task file."""

    name: str
    kind: str
    data: DataSpec
    prompt: PromptSpec
    postprocess: list[str]
    metrics: list[dict[str, Any]]
    shots: list[int]
    description: str = ""
    generation: GenerationSpec | None = None
    ranking: RankingSpec | None = None
    source_path: Path | None = None
    file_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def metric_names(self) -> list[str]:
        return [metric["name"] for metric in self.metrics]


def task_files() -> dict[str, Path]:
    """Return the built-in task files by task name."""
    return {path.stem: path for path in sorted(TASKS_DIR.glob("*.yaml"))}


def load_task(name_or_path: str) -> TaskSpec:
    """Load a built-in task by name, or a user's task file by path."""
    builtin = task_files()
    if name_or_path in builtin:
        return parse_task_file(builtin[name_or_path])
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise InputError(f"{path}: task file not found")
        return parse_task_file(path)
    known = ", ".join(builtin) or "none"
    raise InputError(
        f"unknown task {name_or_path!r}; registered tasks: {known} (or give a task file path)"
    )


def parse_task_file(path: Path) -> TaskSpec:
    """Parse and validate one task file; every error names the file and the field."""
    raw_bytes = path.read_bytes()
    try:
        raw = yaml.safe_load(raw_bytes)
    except yaml.YAMLError as error:
        raise InputError(f"{path}: invalid YAML ({_first_line(error)})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a task file must be a YAML mapping")
    reader = _FieldReader(path, raw)

    unknown = sorted(set(raw) - TASK_FIELDS)
    if unknown:
        raise InputError(
            f"{path}: unknown field {unknown[0]!r}; a task file's fields are {', '.join(sorted(TASK_FIELDS))}"
        )
    kind = reader.require("kind", str)
    if kind not in TASK_KINDS:
        raise InputError(f"{path}: field 'kind' is {kind!r}; expected one of {TASK_KINDS}")

    data_raw = reader.require("data", dict)
    data_reader = _FieldReader(path, data_raw, prefix="data.")
    splits = data_reader.require("splits", dict)
    data = DataSpec(
        loader=data_reader.require("loader", str),
        splits=splits,
        demo_split=data_reader.require("demo_split", str),
        eval_split=data_reader.require("eval_split", str),
        hf=data_reader.optional("hf", dict),
    )
    for split_field in ("demo_split", "eval_split"):
        split = getattr(data, split_field)
        if split not in splits:
            raise InputError(
                f"{path}: data.{split_field} is {split!r}, which is not a key of data.splits"
            )

    prompt_reader = _FieldReader(path, reader.require("prompt", dict), prefix="prompt.")
    prompt = PromptSpec(
        demo=prompt_reader.require("demo", str),
        query=prompt_reader.require("query", str),
        separator=prompt_reader.optional("separator", str, ""),
    )
    for name in ("demo", "query"):
        _check_template(path, f"prompt.{name}", getattr(prompt, name))

    generation = None
    ranking = None
    if kind == "generation":
        generation_raw = reader.optional("generation", dict, {})
        try:
            generation = GenerationSpec(**generation_raw)
        except (TypeError, ValueError) as error:
            raise InputError(f"{path}: invalid field in 'generation' ({error})") from None
    else:
        ranking_reader = _FieldReader(path, reader.require("ranking", dict), prefix="ranking.")
        ranking = RankingSpec(
            class_names=ranking_reader.require("class_names", (list, str)),
            positive_class=ranking_reader.optional("positive_class", str),
        )

    metrics = reader.require("metrics", list)
    for index, metric in enumerate(metrics):
        if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
            raise InputError(f"{path}: metrics[{index}] must be a mapping with a 'name'")

    shots = reader.optional("shots", list, [0, 4, 8, 16, 32])
    if not all(isinstance(shot, int) and shot >= 0 for shot in shots):
        raise InputError(f"{path}: field 'shots' must be a list of non-negative integers")

    return TaskSpec(
        name=reader.optional("name", str, path.stem),
        description=reader.optional("description", str, ""),
        kind=kind,
        data=data,
        prompt=prompt,
        generation=generation,
        ranking=ranking,
        postprocess=reader.optional("postprocess", list, []),
        metrics=metrics,
        shots=shots,
        source_path=path.resolve(),
        file_sha256=hashlib.sha256(raw_bytes).hexdigest(),
        extra=reader.optional("extra", dict, {}),
    )


class _FieldReader:
    """Typed access to a task file's fields with errors that name the file and field."""

    def __init__(self, path: Path, raw: dict[str, Any], prefix: str = ""):
        self.path = path
        self.raw = raw
        self.prefix = prefix

    def require(self, name: str, kind: type | tuple[type, ...]) -> Any:
        if name not in self.raw:
            raise InputError(f"{self.path}: missing field '{self.prefix}{name}'")
        return self._check(name, self.raw[name], kind)

    def optional(self, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        if name not in self.raw or self.raw[name] is None:
            return default
        return self._check(name, self.raw[name], kind)

    def _check(self, name: str, value: Any, kind: type | tuple[type, ...]) -> Any:
        if not isinstance(value, kind):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise InputError(
                f"{self.path}: field '{self.prefix}{name}' must be a {expected}, "
                f"not {type(value).__name__}"
            )
        return value


def _check_template(path: Path, name: str, template: str) -> None:
    """Reject a template that str.format cannot fill (unmatched braces, positional fields)."""
    try:
        fields = [field_name for _, field_name, _, _ in string.Formatter().parse(template)]
    except ValueError as error:
        raise InputError(f"{path}: field '{name}' is not a valid template ({error}); write literal braces as {{{{ }}}}") from None
    if any(field_name is not None and (field_name == "" or field_name.isdigit()) for field_name in fields):
        raise InputError(f"{path}: field '{name}' has a positional {{}} placeholder; name the example field, e.g. {{question}}")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
