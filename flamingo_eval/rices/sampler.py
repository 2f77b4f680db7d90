"""The RICES sampler: demonstrations are the demo examples whose images are most similar to the
evaluated item's image (CLIP cosine similarity), placed with the most similar one last."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from flamingo_eval.data.example import Example
from flamingo_eval.errors import InputError
from flamingo_eval.rices.retrieval import (
    DEFAULT_POOL_CHUNK_SIZE,
    DEFAULT_QUERY_BATCH_SIZE,
    retrieve,
)
from flamingo_eval.samplers import stable_seed

logger = logging.getLogger(__name__)

DEMO_ORDERS = ("retrieved", "random")


class RicesIndex:
    """Retrieval over a pool of demo examples for a fixed set of query examples.

    `pool_features` and `query_features` contain one L2-normalised row per example, in the order
    of `pool` and `queries`. A query never retrieves a pool example with its own image key.
    Rankings are computed in batches (see `prepare`) and kept, so later trials reuse them.
    """

    def __init__(
        self,
        pool: Sequence[Example],
        pool_features: torch.Tensor,
        queries: Sequence[Example],
        query_features: torch.Tensor,
        *,
        device: str | torch.device = "cpu",
        backend: str = "torch",
        query_batch_size: int = DEFAULT_QUERY_BATCH_SIZE,
        pool_chunk_size: int = DEFAULT_POOL_CHUNK_SIZE,
    ):
        if len(pool) != pool_features.shape[0]:
            raise ValueError(f"{len(pool)} pool examples but {pool_features.shape[0]} feature rows")
        if len(queries) != query_features.shape[0]:
            raise ValueError(f"{len(queries)} queries but {query_features.shape[0]} feature rows")
        if not pool:
            raise InputError("RICES needs a non-empty pool of demo examples")
        self.pool = list(pool)
        self.pool_features = pool_features
        self.query_features = query_features
        self.queries = list(queries)
        self.query_rows = {example.id: row for row, example in enumerate(queries)}
        self.query_keys = [example.image.key for example in queries]
        self.device = device
        self.backend = backend
        self.query_batch_size = query_batch_size
        self.pool_chunk_size = pool_chunk_size
        self._pool_rows_by_key: dict[str, list[int]] = {}
        for index, example in enumerate(self.pool):
            self._pool_rows_by_key.setdefault(example.image.key, []).append(index)
        # Query id -> pool indices, most similar first; the list's length is the k computed.
        self._rankings: dict[str, list[int]] = {}

    def restrict_pool(self, indices: Sequence[int]) -> RicesIndex:
        """Return an index over the pool rows `indices` only (a support set), with the same queries."""
        rows = torch.tensor(list(indices), dtype=torch.long)
        return RicesIndex(
            [self.pool[index] for index in indices],
            self.pool_features.index_select(0, rows),
            self.queries,
            self.query_features,
            device=self.device,
            backend=self.backend,
            query_batch_size=self.query_batch_size,
            pool_chunk_size=self.pool_chunk_size,
        )

    def prepare(self, examples: Sequence[Example], count: int) -> None:
        """Retrieve the top `count` pool rows of every example in one batched pass."""
        missing = [example for example in examples if len(self._rankings.get(example.id, ())) < count]
        if not missing or count == 0:
            return
        rows = [self._query_row(example) for example in missing]
        exclude = [self._pool_rows_by_key.get(self.query_keys[row], []) for row in rows]
        available = len(self.pool) - max(len(indices) for indices in exclude)
        if count > available:
            raise InputError(
                f"{count} demonstrations requested but the RICES pool has {available} examples "
                "that do not show the query's image; lower --shots"
            )
        logger.info("RICES: retrieving %d demos for %d items", count, len(missing))
        indices = retrieve(
            self.query_features[rows],
            self.pool_features,
            count,
            exclude=exclude,
            device=self.device,
            query_batch_size=self.query_batch_size,
            pool_chunk_size=self.pool_chunk_size,
            backend=self.backend,
        )
        for example, ranking in zip(missing, indices.tolist()):
            self._rankings[example.id] = ranking

    def ranking(self, example: Example, count: int) -> list[int]:
        """Return the `count` pool indices most similar to the example's image, most similar first."""
        self.prepare([example], count)
        return self._rankings[example.id][:count]

    def _query_row(self, example: Example) -> int:
        row = self.query_rows.get(example.id)
        if row is None:
            raise ValueError(f"item {example.id} has no RICES query features; add it to the index")
        return row


class RicesSampler:
    """Demonstrations retrieved by image similarity, with the most similar placed last.

    `order="retrieved"` lists demos by ascending similarity. `order="random"` shuffles them
    with a generator seeded by a stable hash of (trial seed, item id, "demo_order"). The k-shot
    demos are the k most similar, so the 4-shot set is contained in the 8-shot set.
    """

    name = "rices"

    def __init__(self, index: RicesIndex, seed: int = 0, order: str = "retrieved"):
        if order not in DEMO_ORDERS:
            raise InputError(f"demo order {order!r} must be one of {', '.join(DEMO_ORDERS)}")
        self.index = index
        self.seed = seed
        self.order = order

    def prepare(self, examples: Sequence[Example], count: int) -> None:
        """Retrieve the demos of all `examples` in one batched pass (faster than item by item)."""
        self.index.prepare(examples, count)

    def demos(self, example: Example, count: int) -> list[Example]:
        if count == 0:
            return []
        ranking = self.index.ranking(example, count)
        demos = [self.index.pool[index] for index in reversed(ranking)]
        if self.order == "random":
            generator = np.random.Generator(
                np.random.PCG64(stable_seed(self.seed, example.id, "demo_order"))
            )
            demos = [demos[position] for position in generator.permutation(len(demos))]
        return demos
