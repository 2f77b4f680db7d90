"""Encode each image once: a bounded feature cache and background image loading."""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import torch

from flamingo_eval.data.example import ImageRef

logger = logging.getLogger(__name__)

PREFETCH_THREADS = 2
# How many planned images worker processes may load ahead of the model, at least. For 224-pixel
# images in float32 that is about 150 MB.
PLAN_AHEAD_IMAGES = 256


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
    """Load and preprocess images in the background while the model runs.

    Two ways: `submit` hands the next batch's images to threads in this process, and `plan` hands
    a whole run's images, in the order they will be needed, to `torch.utils.data.DataLoader`
    worker processes. Either way `pixels` returns them and loads any image not yet handed over.

    The workers are forked, so they inherit the image references (which may hold closures over a
    `datasets` table) instead of receiving them pickled. Loading stays at most `max_ahead` images
    ahead of `pixels`, so a long run does not hold all its pixels in memory.
    """

    def __init__(self, image_processor: Callable, threads: int = PREFETCH_THREADS):
        self.image_processor = image_processor
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None
        # Future of each handed-over image, with the slot semaphore of its plan (None for threads).
        self._pending: dict[str, tuple[Future, threading.Semaphore | None]] = {}
        self._plan_stop: threading.Event | None = None
        self._plan_thread: threading.Thread | None = None

    def _load(self, image: ImageRef) -> torch.Tensor:
        return self.image_processor(image.open())

    def submit(self, images: list[ImageRef]) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="flamingo-eval-images")
        for image in images:
            if image.cache_key not in self._pending:
                self._pending[image.cache_key] = (self._executor.submit(self._load, image), None)

    def plan(self, images: list[ImageRef], workers: int, max_ahead: int = PLAN_AHEAD_IMAGES) -> None:
        """Start `workers` DataLoader worker processes that load `images` in this order.

        `pixels` must then ask for the images in the same order, one batch at a time, and a batch
        must hold at most `max_ahead` planned images. Replaces an earlier plan.
        """
        self.stop_plan()
        if "fork" not in multiprocessing.get_all_start_methods():
            logger.warning("image worker processes need the fork start method; loading on threads")
            return
        distinct = list({image.cache_key: image for image in images if image.cache_key not in self._pending}.values())
        if not distinct:
            return
        # NOTE: imported here, not at the top. With a module-level import, two-rank torchrun runs
        # under `.ci/run` aborted at exit on rank 1 ("terminate called without an active
        # exception") in 2 of 2 runs, and passed once it moved here. The cause is not known, so
        # runs that combine torchrun with --image-workers may still hit it.
        from torch.utils.data import DataLoader

        loader = DataLoader(
            _ImageList(distinct, self._load_or_error),
            batch_size=None,
            num_workers=workers,
            multiprocessing_context="fork",
        )
        slots = threading.Semaphore(max_ahead)
        futures = [Future() for _ in distinct]
        for image, future in zip(distinct, futures):
            self._pending[image.cache_key] = (future, slots)
        self._plan_stop = threading.Event()
        self._plan_thread = threading.Thread(
            target=_produce, args=(loader, futures, slots, self._plan_stop),
            name="flamingo-eval-image-workers", daemon=True,
        )
        self._plan_thread.start()

    def _load_or_error(self, image: ImageRef) -> torch.Tensor | Exception:
        # Runs in a worker process. The error travels back as a value, so the caller raises it
        # unchanged instead of DataLoader's multi-line wrapper.
        try:
            return self._load(image)
        except Exception as error:  # noqa: BLE001 - re-raised by `pixels` in the main process
            return error

    def stop_plan(self) -> None:
        """Stop the current plan's workers. Images it has not loaded yet are loaded on demand."""
        if self._plan_thread is None:
            return
        self._plan_stop.set()
        self._plan_thread.join()
        self._plan_thread = None
        self._pending = {
            key: (future, slots) for key, (future, slots) in self._pending.items()
            if slots is None or future.done()
        }

    def pixels(self, images: list[ImageRef]) -> torch.Tensor:
        """Return preprocessed pixels (N, C, H, W) of `images`, waiting for prefetched ones."""
        entries = [self._pending.pop(image.cache_key, None) for image in images]
        # Free every planned slot of this batch before waiting, so the workers can load all of
        # the batch's images whatever order they are asked for in.
        for entry in entries:
            if entry is not None and entry[1] is not None:
                entry[1].release()
        tensors = []
        for image, entry in zip(images, entries):
            tensors.append(entry[0].result() if entry is not None else self._load(image))
        return torch.stack(tensors)


class _ImageList:
    """The images of a plan, loaded by index in DataLoader worker processes (a map-style dataset)."""

    def __init__(self, images: list[ImageRef], load: Callable[[ImageRef], Any]):
        self.images = images
        self.load = load

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Any:
        return self.load(self.images[index])


def _produce(loader: Any, futures: list[Future], slots: threading.Semaphore, stop: threading.Event) -> None:
    """Fill `futures` in order from `loader`, taking a slot before each, until `stop` is set."""
    iterator = iter(loader)
    try:
        for future in futures:
            while not slots.acquire(timeout=0.1):
                if stop.is_set():
                    return
            if stop.is_set():
                return
            result = next(iterator)
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
    except Exception as error:  # noqa: BLE001 - a worker died; callers see the error
        for future in futures:
            if not future.done():
                future.set_exception(error)
    finally:
        del iterator  # shuts the worker processes down
