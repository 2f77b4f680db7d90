"""Exact top-k retrieval by inner product, in query batches and pool chunks with a running top-k.

Features are expected to be L2-normalised, so the inner product is the cosine similarity.

Tie rule: results are ordered by descending similarity, and among equal similarities the lower
pool index comes first. Equal means bit-identical float32 scores, which duplicate images in the
pool produce. The rule also decides which tied items enter the top k at its boundary.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from flamingo_eval.errors import InputError

logger = logging.getLogger(__name__)

# A 1024 x 16384 float32 score block takes 64 MiB. At this size the matrix product is about 90%
# of the time on a 2-core AMD EPYC (benchmarks/rices_retrieval.py); smaller blocks were slower.
DEFAULT_QUERY_BATCH_SIZE = 1024
DEFAULT_POOL_CHUNK_SIZE = 16384
BACKENDS = ("torch", "faiss")


@dataclass(frozen=True)
class TopK:
    """Top-k pool rows per query: `scores` and `indices`, shape (queries, k), best first."""

    scores: torch.Tensor
    indices: torch.Tensor


def retrieve(
    query_features: torch.Tensor,
    pool_features: torch.Tensor,
    k: int,
    *,
    exclude: Sequence[Sequence[int]] | None = None,
    device: str | torch.device | None = None,
    query_batch_size: int = DEFAULT_QUERY_BATCH_SIZE,
    pool_chunk_size: int = DEFAULT_POOL_CHUNK_SIZE,
    backend: str = "torch",
) -> torch.Tensor:
    """Return the pool indices of each query's k most similar rows, shape (queries, k), on the CPU.

    Row i lists pool indices by descending similarity with the module's tie rule. `exclude[i]`
    lists pool indices that query i must never get (its own image). See `retrieve_top_k`.
    """
    return retrieve_top_k(
        query_features,
        pool_features,
        k,
        exclude=exclude,
        device=device,
        query_batch_size=query_batch_size,
        pool_chunk_size=pool_chunk_size,
        backend=backend,
    ).indices


def retrieve_top_k(
    query_features: torch.Tensor,
    pool_features: torch.Tensor,
    k: int,
    *,
    exclude: Sequence[Sequence[int]] | None = None,
    device: str | torch.device | None = None,
    query_batch_size: int = DEFAULT_QUERY_BATCH_SIZE,
    pool_chunk_size: int = DEFAULT_POOL_CHUNK_SIZE,
    backend: str = "torch",
) -> TopK:
    """Find each query's k pool rows of highest inner product; return scores and indices on the CPU.

    The torch backend computes one (query_batch_size x pool_chunk_size) score block at a time on
    `device` (default: the pool's device) and merges it into a running top-k, so memory grows
    with the block, not with queries x pool. The pool is copied to `device` once when it lives
    elsewhere. The faiss backend (`IndexFlatIP`, exact) needs the optional faiss package.

    Raises ValueError when a query has fewer than k pool rows left after its exclusions.
    """
    _check_inputs(query_features, pool_features, k, exclude, query_batch_size, pool_chunk_size)
    if backend == "faiss":
        return _retrieve_faiss(query_features, pool_features, k, exclude)
    if backend != "torch":
        raise InputError(f"unknown retrieval backend {backend!r}; expected one of {', '.join(BACKENDS)}")

    device = torch.device(device) if device is not None else pool_features.device
    pool = pool_features.to(device=device, dtype=torch.float32)
    exclusion_pairs = _exclusion_pairs(exclude, device)

    all_scores = []
    all_indices = []
    for start in range(0, query_features.shape[0], query_batch_size):
        stop = min(start + query_batch_size, query_features.shape[0])
        queries = query_features[start:stop].to(device=device, dtype=torch.float32)
        pairs = _pairs_in_range(exclusion_pairs, start, stop, column=0)
        scores, indices = _retrieve_batch(queries, pool, k, pairs, pool_chunk_size)
        all_scores.append(scores.cpu())
        all_indices.append(indices.cpu())

    scores = torch.cat(all_scores)
    indices = torch.cat(all_indices)
    _check_enough_candidates(scores, k)
    return TopK(scores=scores, indices=indices)


def _check_inputs(
    query_features: torch.Tensor,
    pool_features: torch.Tensor,
    k: int,
    exclude: Sequence[Sequence[int]] | None,
    query_batch_size: int,
    pool_chunk_size: int,
) -> None:
    if query_features.ndim != 2 or pool_features.ndim != 2:
        raise ValueError(
            f"features must be 2-D (rows, dim); got queries {tuple(query_features.shape)} "
            f"and pool {tuple(pool_features.shape)}"
        )
    if query_features.shape[1] != pool_features.shape[1]:
        raise ValueError(
            f"query features have dim {query_features.shape[1]} but pool features have dim "
            f"{pool_features.shape[1]}; build both with the same encoder"
        )
    if k < 1 or k > pool_features.shape[0]:
        raise ValueError(f"k={k} must be between 1 and the pool size {pool_features.shape[0]}")
    if query_batch_size < 1 or pool_chunk_size < 1:
        raise ValueError("query_batch_size and pool_chunk_size must be at least 1")
    if exclude is not None and len(exclude) != query_features.shape[0]:
        raise ValueError(
            f"exclude has {len(exclude)} entries but there are {query_features.shape[0]} queries"
        )


def _exclusion_pairs(exclude: Sequence[Sequence[int]] | None, device: torch.device) -> torch.Tensor:
    """Flatten per-query exclusions into (query row, pool index) pairs, sorted by query row."""
    if exclude is None:
        return torch.empty(0, 2, dtype=torch.long, device=device)
    rows = [row for row, indices in enumerate(exclude) for _ in indices]
    columns = [int(index) for indices in exclude for index in indices]
    return torch.tensor([rows, columns], dtype=torch.long, device=device).T.reshape(-1, 2)


def _pairs_in_range(pairs: torch.Tensor, start: int, stop: int, column: int) -> torch.Tensor:
    """Select the pairs whose `column` value lies in [start, stop), shifted to start at 0."""
    if pairs.numel() == 0:
        return pairs
    selected = pairs[(pairs[:, column] >= start) & (pairs[:, column] < stop)].clone()
    selected[:, column] -= start
    return selected


def _retrieve_batch(
    queries: torch.Tensor,
    pool: torch.Tensor,
    k: int,
    exclusion_pairs: torch.Tensor,
    pool_chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Running top-k of one query batch over the pool, chunk by chunk."""
    best_scores = None
    best_indices = None
    # One score buffer is reused for every chunk: a fresh 64 MiB tensor per chunk costs page
    # faults (about 8% more CPU time in benchmarks/rices_retrieval.py).
    buffer = torch.empty(queries.shape[0] * min(pool_chunk_size, pool.shape[0]), device=pool.device)
    for start in range(0, pool.shape[0], pool_chunk_size):
        stop = min(start + pool_chunk_size, pool.shape[0])
        scores = buffer[: queries.shape[0] * (stop - start)].view(queries.shape[0], stop - start)
        torch.mm(queries, pool[start:stop].T, out=scores)
        pairs = _pairs_in_range(exclusion_pairs, start, stop, column=1)
        if pairs.numel():
            scores[pairs[:, 0], pairs[:, 1]] = float("-inf")
        chunk_scores, chunk_indices = _chunk_top_k(scores, k)
        chunk_indices += start
        if best_scores is None:
            best_scores, best_indices = chunk_scores, chunk_indices
            continue
        # Earlier chunks hold lower pool indices, and both parts are already in tie-rule order,
        # so a stable sort of [best, chunk] keeps lower indices first among equal scores.
        merged_scores = torch.cat([best_scores, chunk_scores], dim=1)
        merged_indices = torch.cat([best_indices, chunk_indices], dim=1)
        merged_scores, order = merged_scores.sort(dim=1, descending=True, stable=True)
        best_scores = merged_scores[:, :k]
        best_indices = merged_indices.gather(1, order[:, :k])
    return best_scores, best_indices


def _chunk_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of one score block, ordered by descending score and then ascending column.

    `torch.topk` picks tied elements in no documented order. Taking k + 1 shows whether the k-th
    score is tied with one left out; only such rows are re-ranked with a stable full sort.
    """
    columns = scores.shape[1]
    take = min(k + 1, columns)
    top_scores, top_indices = scores.topk(take, dim=1, sorted=True)
    if take > k:
        boundary_tied = (top_scores[:, k] == top_scores[:, k - 1]) & torch.isfinite(top_scores[:, k])
        top_scores = top_scores[:, :k]
        top_indices = top_indices[:, :k]
        tied_rows = boundary_tied.nonzero().flatten()
        if tied_rows.numel():
            row_scores, row_indices = scores[tied_rows].sort(dim=1, descending=True, stable=True)
            top_scores[tied_rows] = row_scores[:, :k]
            top_indices[tied_rows] = row_indices[:, :k]

    # Order ties inside the top k by column: sort by column, then stable-sort by score.
    top_indices, by_column = top_indices.sort(dim=1)
    top_scores = top_scores.gather(1, by_column)
    top_scores, by_score = top_scores.sort(dim=1, descending=True, stable=True)
    top_indices = top_indices.gather(1, by_score)
    return top_scores, top_indices


def _check_enough_candidates(scores: torch.Tensor, k: int) -> None:
    short = torch.isneginf(scores).any(dim=1).nonzero().flatten()
    if short.numel():
        raise ValueError(
            f"query row {int(short[0])} has fewer than {k} pool rows left after excluding its "
            "own image; lower the number of demonstrations or enlarge the pool"
        )


def _retrieve_faiss(
    query_features: torch.Tensor,
    pool_features: torch.Tensor,
    k: int,
    exclude: Sequence[Sequence[int]] | None,
) -> TopK:
    """Exact search with faiss `IndexFlatIP`, then exclusions and the tie rule applied here.

    NOTE: faiss breaks ties at the k-th place its own way, so with bit-identical scores at that
    boundary its top-k can hold a different (equally similar) pool row than the torch backend.
    """
    try:
        import faiss
    except ImportError:
        raise InputError(
            "retrieval backend 'faiss' requested but faiss is not installed; "
            "pip install faiss-cpu, or use the default torch backend"
        ) from None
    import numpy as np

    pool = np.ascontiguousarray(pool_features.detach().cpu().float().numpy())
    queries = np.ascontiguousarray(query_features.detach().cpu().float().numpy())
    index = faiss.IndexFlatIP(pool.shape[1])
    index.add(pool)
    extra = max((len(indices) for indices in exclude), default=0) if exclude is not None else 0
    search_k = min(k + extra, pool.shape[0])
    found_scores, found_indices = index.search(queries, search_k)

    scores = torch.full((queries.shape[0], k), float("-inf"))
    indices = torch.full((queries.shape[0], k), -1, dtype=torch.long)
    for row in range(queries.shape[0]):
        excluded = set(exclude[row]) if exclude is not None else set()
        candidates = [
            (float(score), int(index))
            for score, index in zip(found_scores[row], found_indices[row])
            if index >= 0 and int(index) not in excluded
        ]
        candidates.sort(key=lambda candidate: (-candidate[0], candidate[1]))
        for column, (score, index) in enumerate(candidates[:k]):
            scores[row, column] = score
            indices[row, column] = index
    _check_enough_candidates(scores, k)
    return TopK(scores=scores, indices=indices)
