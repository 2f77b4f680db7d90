"""Encode each image once: a bounded feature cache and background image loading."""

from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import torch

from flamingo_eval.data.example import ImageRef

PREFETCH_THREADS = 2


class MediaCache:
    """Least-recently-used store of per-image media features, keyed by `ImageRef.cache_key`."""

    def __init__(self, max_items: int):
        self.max_items = max_items
        self._features: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._features

    def __len__(self) -> int:
        return len(self._features)

    def get(self, key: str) -> torch.Tensor:
        self._features.move_to_end(key)
        return self._features[key]

    def put(self, key: str, feature: torch.Tensor) -> None:
        self._features[key] = feature
        self._features.move_to_end(key)
        while len(self._features) > self.max_items:
            self._features.popitem(last=False)

    def clear(self) -> None:
        self._features.clear()


class PixelPrefetcher:
    """Load and preprocess images on background threads while the model runs.

    PIL's decoders and torchvision's tensor transforms release the GIL for most of their work, so
    threads overlap image loading with the model's forward passes without pickling image
    references (which may hold closures over a `datasets` table) into worker processes.
    """

    def __init__(self, image_processor: Callable, threads: int = PREFETCH_THREADS):
        self.image_processor = image_processor
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._pending: dict[str, Future] = {}

    def _load(self, image: ImageRef) -> torch.Tensor:
        return self.image_processor(image.open())

    def submit(self, images: list[ImageRef]) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="flamingo-eval-images")
        for image in images:
            if image.cache_key not in self._pending:
                self._pending[image.cache_key] = self._executor.submit(self._load, image)

    def pixels(self, images: list[ImageRef]) -> torch.Tensor:
        """Return preprocessed pixels (N, C, H, W) of `images`, waiting for prefetched ones."""
        tensors = []
        for image in images:
            future = self._pending.pop(image.cache_key, None)
            tensors.append(future.result() if future is not None else self._load(image))
        return torch.stack(tensors)
