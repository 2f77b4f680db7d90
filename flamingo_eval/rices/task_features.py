"""RICES features of a task's splits: build the cache ahead of a run, or load a retrieval index."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from flamingo_eval.data.example import Example
from flamingo_eval.registry import TaskSpec
from flamingo_eval.rices.cache import cache_paths, default_feature_cache_dir, load_or_build_features
from flamingo_eval.rices.encoder import (
    DEFAULT_ENCODER,
    DEFAULT_PRETRAINED,
    ImageEncoder,
    LazyImageEncoder,
)
from flamingo_eval.rices.retrieval import DEFAULT_POOL_CHUNK_SIZE, DEFAULT_QUERY_BATCH_SIZE
from flamingo_eval.rices.sampler import RicesIndex


@dataclass(frozen=True)
class RicesOptions:
    """Settings of RICES feature computation, caching and search.

    `pretrained=None` means random weights (tests only). `strict=True` makes a missing or
    mismatching cache an error instead of a rebuild.
    """

    encoder: str = DEFAULT_ENCODER
    pretrained: str | None = DEFAULT_PRETRAINED
    cache_dir: Path = field(default_factory=default_feature_cache_dir)
    device: str = "cpu"
    batch_size: int = 64
    strict: bool = False
    backend: str = "torch"
    query_batch_size: int = DEFAULT_QUERY_BATCH_SIZE
    pool_chunk_size: int = DEFAULT_POOL_CHUNK_SIZE


def split_cache_name(task: TaskSpec, split: str) -> str:
    """Name of a split's cache entry: `<task>-<split>`."""
    return f"{task.name}-{split}"


def split_features(
    task: TaskSpec,
    split: str,
    examples: list[Example],
    options: RicesOptions,
    encoder: ImageEncoder | LazyImageEncoder | None = None,
) -> torch.Tensor:
    """Load or build the features of one split, one row per example."""
    return load_or_build_features(
        examples,
        options.encoder,
        options.pretrained,
        options.cache_dir,
        options.device,
        options.batch_size,
        name=split_cache_name(task, split),
        strict=options.strict,
        encoder=encoder,
    )


def cache_task_features(
    task: TaskSpec,
    data_dir: Path,
    options: RicesOptions,
    source: str = "files",
) -> list[Path]:
    """Build (or check) the feature cache of a task's demo and eval splits; return the files.

    The code path behind `flamingo-eval cache-features --task T`. The encoder is loaded once,
    and only when a split's cache is missing or does not match.
    """
    from flamingo_eval import data as data_loading

    encoder = LazyImageEncoder(options.encoder, options.pretrained, options.device)
    paths = []
    for split in dict.fromkeys([task.data.demo_split, task.data.eval_split]):
        examples = data_loading.load_split(task, split, data_dir, source=source)
        split_features(task, split, examples, options, encoder)
        entry = cache_paths(
            options.cache_dir, split_cache_name(task, split), options.encoder, options.pretrained
        )
        paths.append(entry.features)
    return paths


def load_rices_index(
    task: TaskSpec,
    demo_examples: list[Example],
    eval_examples: list[Example],
    options: RicesOptions,
) -> RicesIndex:
    """Load or build both splits' features and return the index RICES samplers share.

    The pool is the whole demo split, not a trial's query set.
    """
    encoder = LazyImageEncoder(options.encoder, options.pretrained, options.device)
    pool_features = split_features(task, task.data.demo_split, demo_examples, options, encoder)
    query_features = split_features(task, task.data.eval_split, eval_examples, options, encoder)
    return RicesIndex(
        demo_examples,
        pool_features,
        eval_examples,
        query_features,
        device=options.device,
        backend=options.backend,
        query_batch_size=options.query_batch_size,
        pool_chunk_size=options.pool_chunk_size,
    )
