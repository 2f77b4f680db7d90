"""The `canary` presets: the tiny Flamingo trained on the generated sample suite.

A random tiny model scores near zero on every task, so bugs in image order, padding masks or
post-processing change nothing a test can see. The canary checkpoints (written by
scripts/train_canary.py, same architecture as `build_tiny()`) have learned the sample tasks and
score well above chance on them, so such bugs show up as score drops. `canary-early` is a
checkpoint from early in the same training run and scores lower on every task.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from flamingo_eval.errors import InputError
from flamingo_eval.models.base import EvalModel
from flamingo_eval.models.checkpoint import file_sha256
from flamingo_eval.models.flamingo_adapter import FlamingoModel
from flamingo_eval.models.options import ModelOptions
from flamingo_eval.models.precision import resolve_device, resolve_precision
from flamingo_eval.models.tiny import VISION_ENCODER, build_tiny

CANARY_DIR = Path(__file__).resolve().parent / "assets" / "canary"
CANARY_CHECKPOINTS = {
    "canary": CANARY_DIR / "canary.safetensors",
    "canary-early": CANARY_DIR / "canary-early.safetensors",
}


def load_canary(
    name: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    autocast_dtype: torch.dtype | None = None,
    precision: str | None = None,
) -> FlamingoModel:
    """Build the tiny model, load the named canary checkpoint into it and wrap it for the harness.

    The checkpoint contains the full state dict, so it is loaded with `strict=True`. The model's
    identity names the checkpoint file and its SHA-256, so runs of different checkpoints get
    different fingerprints.
    """
    path = CANARY_CHECKPOINTS.get(name)
    if path is None:
        raise InputError(f"unknown canary checkpoint {name!r}; expected one of {', '.join(CANARY_CHECKPOINTS)}")
    if not path.is_file():
        raise InputError(
            f"{path}: canary checkpoint not found; restore it from the repository or write it "
            "with scripts/train_canary.py"
        )

    model, image_processor, tokenizer = build_tiny()
    model.load_state_dict(load_file(str(path)), strict=True)
    identity = {
        "preset": name,
        "weights": path.name,
        "checkpoint": {"path": str(path), "sha256": file_sha256(path)},
        "vision_encoder": VISION_ENCODER,
        "language_model": "LlamaForCausalLM (2 layers, hidden size 64)",
    }
    return FlamingoModel(
        model,
        image_processor,
        tokenizer,
        name=name,
        device=device,
        dtype=dtype,
        autocast_dtype=autocast_dtype,
        precision=precision,
        identity=identity,
    )


def load_canary_preset(name: str, options: ModelOptions) -> EvalModel:
    """Load a canary preset with the device and precision of `options`.

    Raises InputError when `options` sets path overrides, because the canary's files ship with
    the package.
    """
    options.reject_overrides(
        name,
        "its weights and files ship with flamingo-eval. Drop the option, or load your own "
        "weights with an OpenFlamingo or IDEFICS preset",
    )
    precision = resolve_precision(options.precision)
    return load_canary(
        name,
        device=resolve_device(options.device),
        dtype=precision.weights_dtype,
        autocast_dtype=precision.autocast_dtype,
        precision=precision.name,
    )
