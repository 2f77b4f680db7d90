"""Model adapters and presets: `load_model(name)` returns an `EvalModel`.

`name` is a preset (`tiny`, `canary`, the OpenFlamingo and IDEFICS presets in `PRESETS`) or a
user's factory as `package.module:function`.
"""

from __future__ import annotations

import argparse
from typing import Callable

from flamingo_eval.errors import InputError
from flamingo_eval.models.base import EvalModel, Generation, Request
from flamingo_eval.models.options import ModelOptions, add_model_arguments, model_options_from_args
from flamingo_eval.models.precision import PRECISIONS, resolve_device, resolve_precision


def _load_tiny(options: ModelOptions) -> EvalModel:
    from flamingo_eval.models.flamingo_adapter import FlamingoModel
    from flamingo_eval.models.tiny import GATE_VALUE, SEED, VISION_ENCODER, build_tiny

    options.reject_overrides(
        "tiny",
        "it is built without files. Drop the option, or load weights with an OpenFlamingo or IDEFICS preset",
    )
    precision = resolve_precision(options.precision)
    device = resolve_device(options.device)
    model, image_processor, tokenizer = build_tiny()
    identity = {
        "preset": "tiny",
        "weights": f"random, torch.manual_seed({SEED}), gates {GATE_VALUE}",
        "vision_encoder": VISION_ENCODER,
        "language_model": "LlamaForCausalLM (2 layers, hidden size 64)",
    }
    return FlamingoModel(
        model,
        image_processor,
        tokenizer,
        name="tiny",
        device=device,
        dtype=precision.weights_dtype,
        autocast_dtype=precision.autocast_dtype,
        precision=precision.name,
        identity=identity,
    )


def _openflamingo_loader(name: str) -> Callable[[ModelOptions], EvalModel]:
    def load(options: ModelOptions) -> EvalModel:
        from flamingo_eval.models.presets import OPENFLAMINGO_PRESETS, load_openflamingo

        return load_openflamingo(OPENFLAMINGO_PRESETS[name], options)

    return load


def _idefics_loader(name: str) -> Callable[[ModelOptions], EvalModel]:
    def load(options: ModelOptions) -> EvalModel:
        from flamingo_eval.models.idefics_adapter import load_idefics

        return load_idefics(name, options)

    return load


def _canary_loader(name: str) -> Callable[[ModelOptions], EvalModel]:
    def load(options: ModelOptions) -> EvalModel:
        from flamingo_eval.models.canary import load_canary_preset

        return load_canary_preset(name, options)

    return load


def _build_registry() -> dict[str, Callable[[ModelOptions], EvalModel]]:
    from flamingo_eval.models.idefics_adapter import IDEFICS_PRESETS

    registry: dict[str, Callable[[ModelOptions], EvalModel]] = {"tiny": _load_tiny}
    for name in ("canary", "canary-early"):
        registry[name] = _canary_loader(name)
    for name in ("openflamingo-3b", "openflamingo-3b-instruct", "openflamingo-4b",
                 "openflamingo-4b-instruct", "openflamingo-9b"):
        registry[name] = _openflamingo_loader(name)
    for name in IDEFICS_PRESETS:
        registry[name] = _idefics_loader(name)
    return registry


# Preset name -> loader taking ModelOptions. Loaders import their heavy modules when called.
PRESETS: dict[str, Callable[[ModelOptions], EvalModel]] = _build_registry()


def load_model(
    name: str,
    device: str = "cpu",
    precision: str = "fp32",
    *,
    checkpoint: str | None = None,
    lm_path: str | None = None,
    tokenizer_path: str | None = None,
    vision_encoder: str | None = None,
    trust_remote_code: bool = False,
) -> EvalModel:
    """Build a preset, or call a user's `package.module:function` factory, on `device` in `precision`.

    The path arguments replace a preset's parts (see ModelOptions).
    """
    options = ModelOptions(
        device=str(device),
        precision=precision,
        checkpoint=checkpoint,
        lm_path=lm_path,
        tokenizer_path=tokenizer_path,
        vision_encoder=vision_encoder,
        trust_remote_code=trust_remote_code,
    )
    return load_model_with_options(name, options)


def load_model_with_options(name: str, options: ModelOptions) -> EvalModel:
    """Build the model `name` (preset or `module:function`) with `options`."""
    from flamingo_eval.models.user_factory import is_factory_reference, load_user_model

    resolve_precision(options.precision)
    if is_factory_reference(name):
        options.reject_overrides(
            name, "a factory loads its own files. Drop the option, and set the path inside the factory"
        )
        return load_user_model(name, device=options.device, precision=options.precision)
    if name not in PRESETS:
        raise InputError(
            f"unknown model {name!r}; presets: {', '.join(PRESETS)}, or a factory as "
            "package.module:function"
        )
    return PRESETS[name](options)


def load_model_from_args(args: argparse.Namespace) -> EvalModel:
    """Build the model named by `args.model` with the flags `add_model_arguments` defines."""
    return load_model_with_options(args.model, model_options_from_args(args))


__all__ = [
    "EvalModel",
    "Generation",
    "Request",
    "ModelOptions",
    "PRECISIONS",
    "PRESETS",
    "add_model_arguments",
    "load_model",
    "load_model_from_args",
    "load_model_with_options",
]
