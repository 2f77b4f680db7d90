"""Data-parallel evaluation with torch.distributed: ranks, sharding and gathering to rank 0.

Started by torchrun (or Slurm's srun with the same variables), every process reads RANK,
WORLD_SIZE and LOCAL_RANK; without them the run is a single process and nothing here
communicates. Collectives use NCCL on CUDA devices and gloo on the CPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

# A rank waiting in a collective for longer than this raises instead of hanging.
DEFAULT_TIMEOUT_MINUTES = 30


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: its rank, the world size and its local rank."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, items: list) -> list:
        """Return this rank's items: every world_size-th one from position `rank`.

        Shards differ in size by at most one item and no item is repeated, unlike
        DistributedSampler, which pads shards with repeated items.
        """
        return items[self.rank :: self.world_size]

    def gather(self, value: Any) -> list[Any] | None:
        """Collect one picklable value per rank on rank 0 (None elsewhere)."""
        if not self.active:
            return [value]
        gathered = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, gathered, dst=0)
        return gathered

    def broadcast(self, value: Any) -> Any:
        """Return rank 0's `value` on every rank."""
        if not self.active:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def init_distributed(device: str, timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES) -> tuple[DistContext, str]:
    """Join the process group when launched by torchrun; return the context and the device.

    On CUDA each process takes the GPU of its local rank, so `--device cuda` spreads ranks over
    a node's GPUs.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(), device
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    uses_cuda = device.startswith("cuda")
    if uses_cuda:
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        # gloo needs a CPU process group even for object collectives, NCCL needs the device.
        dist.init_process_group(
            backend="nccl" if uses_cuda else "gloo",
            timeout=timedelta(minutes=timeout_minutes),
        )
    logger.info("rank %d of %d (local rank %d) on %s", rank, world_size, local_rank, device)
    return DistContext(rank, world_size, local_rank), device


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
