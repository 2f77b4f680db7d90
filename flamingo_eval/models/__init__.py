"""Model adapters and presets: `load_model(name)` returns an `EvalModel`."""

from __future__ import annotations

from typing import Callable

import torch

from flamingo_eval.errors import InputError
from flamingo_eval.models.base import EvalModel, Generation, Request

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _load_tiny(device: str, dtype: torch.dtype) -> EvalModel:
    from flamingo_eval.models.flamingo_adapter import FlamingoModel
    from flamingo_eval.models.tiny import GATE_VALUE, SEED, VISION_ENCODER, build_tiny

    model, image_processor, tokenizer = build_tiny()
    identity = {
        "preset": "tiny",
        "weights": f"random, torch.manual_seed({SEED}), gates {GATE_VALUE}",
        "vision_encoder": VISION_ENCODER,
        "language_model": "LlamaForCausalLM (2 layers, hidden size 64)",
    }
    return FlamingoModel(
        model, image_processor, tokenizer, name="tiny", device=device, dtype=dtype, identity=identity
    )


PRESETS: dict[str, Callable[[str, torch.dtype], EvalModel]] = {
    "tiny": _load_tiny,
}


def load_model(name: str, device: str = "cpu", precision: str = "fp32") -> EvalModel:
    """Build a preset model on `device` in `precision`."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if name not in PRESETS:
        raise InputError(f"unknown model {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name](device, PRECISIONS[precision])


__all__ = ["EvalModel", "Generation", "Request", "PRESETS", "load_model"]
