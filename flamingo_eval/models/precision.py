"""Precision modes and devices: which dtype the weights are stored in, and whether forwards autocast.

Only floating-point tensors change dtype. Token ids, attention masks and media locations keep
their integer or bool dtypes in every mode, because bfloat16 represents integers exactly only up to
256 (token id 257 becomes 256, 50277 becomes 50176).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import ContextManager

import torch

from flamingo_eval.errors import InputError


@dataclass(frozen=True)
class Precision:
    """A precision mode: the weights' dtype, and the dtype forwards autocast to (None: no autocast)."""

    name: str
    weights_dtype: torch.dtype
    autocast_dtype: torch.dtype | None = None


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("fp32", torch.float32),
    "bf16": Precision("bf16", torch.bfloat16),
    "fp16": Precision("fp16", torch.float16),
    # Weights stay in float32; matrix products run in bfloat16 under torch.autocast.
    "amp_bf16": Precision("amp_bf16", torch.float32, torch.bfloat16),
}


def resolve_precision(name: str) -> Precision:
    """Return the precision mode called `name`, raising InputError for an unknown name."""
    try:
        return PRECISIONS[name]
    except KeyError:
        raise InputError(
            f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}"
        ) from None


def resolve_device(name: str | torch.device) -> torch.device:
    """Parse a torch device name and check that this machine has it."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise InputError(f"invalid device {name!r} ({error}); use e.g. cpu, cuda or cuda:0") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(
                f"device {name!r} not found: this machine has {torch.cuda.device_count()} CUDA devices"
            )
    return device


def autocast(device: torch.device, autocast_dtype: torch.dtype | None) -> ContextManager:
    """Return a torch.autocast context for `autocast_dtype`, or a no-op context when it is None."""
    if autocast_dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=autocast_dtype)
