"""OpenFlamingo presets: where each released model's parts live, and the loader that builds it.

Every part of a preset can be replaced by a local path (ModelOptions), so a preset's code path
is the same for a hub checkpoint and for a folder on disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from flamingo_eval.errors import InputError
from flamingo_eval.models.checkpoint import load_flamingo_checkpoint
from flamingo_eval.models.hf_loading import (
    decoder_layers_attr_for,
    load_causal_lm,
    load_tokenizer,
    resolve_file,
)
from flamingo_eval.models.options import ModelOptions
from flamingo_eval.models.precision import resolve_device, resolve_precision

logger = logging.getLogger(__name__)

# OpenFlamingo trained on open_clip 2.x, which built "openai" towers with QuickGELU. open_clip 3.x
# builds "ViT-L-14" with GELU whatever the tag, so the presets name the QuickGELU config to match
# the weights.
OPENAI_VIT_L_14 = "ViT-L-14-quickgelu"


@dataclass(frozen=True)
class FlamingoPreset:
    """A Flamingo model built by the factory: vision tower, language model and trained weights.

    `vision_pretrained` is an open_clip pretrained tag or weights file (None: random weights).
    `language_model` and `tokenizer` are hub repo ids or local folders. The trained weights are
    `checkpoint_file` in the hub repo `checkpoint_repo`.
    """

    name: str
    vision_encoder: str
    vision_pretrained: str | None
    language_model: str
    tokenizer: str
    cross_attn_every_n_layers: int
    checkpoint_repo: str | None
    checkpoint_file: str = "checkpoint.pt"
    decoder_layers_attr: str | None = None


def _openflamingo(name, lm, interval, repo) -> FlamingoPreset:
    return FlamingoPreset(
        name=name,
        vision_encoder=OPENAI_VIT_L_14,
        vision_pretrained="openai",
        language_model=lm,
        tokenizer=lm,
        cross_attn_every_n_layers=interval,
        checkpoint_repo=repo,
    )


OPENFLAMINGO_PRESETS: dict[str, FlamingoPreset] = {
    preset.name: preset
    for preset in (
        _openflamingo(
            "openflamingo-3b", "anas-awadalla/mpt-1b-redpajama-200b", 1,
            "openflamingo/OpenFlamingo-3B-vitl-mpt1b",
        ),
        _openflamingo(
            "openflamingo-3b-instruct", "anas-awadalla/mpt-1b-redpajama-200b-dolly", 1,
            "openflamingo/OpenFlamingo-3B-vitl-mpt1b-langinstruct",
        ),
        _openflamingo(
            "openflamingo-4b", "togethercomputer/RedPajama-INCITE-Base-3B-v1", 2,
            "openflamingo/OpenFlamingo-4B-vitl-rpj3b",
        ),
        _openflamingo(
            "openflamingo-4b-instruct", "togethercomputer/RedPajama-INCITE-Instruct-3B-v1", 2,
            "openflamingo/OpenFlamingo-4B-vitl-rpj3b-langinstruct",
        ),
        _openflamingo(
            "openflamingo-9b", "anas-awadalla/mpt-7b", 4,
            "openflamingo/OpenFlamingo-9B-vitl-mpt7b",
        ),
    )
}


def parse_vision_encoder(value: str, default_name: str) -> tuple[str, str | None]:
    """Split a --vision-encoder value into (open_clip model name, pretrained tag or file).

    Accepted forms: NAME:TAG, NAME:FILE, NAME:random (random weights), FILE (the preset's
    architecture with weights from FILE), and open_clip's hf-hub:ORG/REPO names.
    """
    if Path(value).expanduser().is_file():
        return default_name, str(Path(value).expanduser())
    if value.startswith("hf-hub:"):
        return value, None
    name, separator, pretrained = value.partition(":")
    if not separator or not name or not pretrained:
        raise InputError(
            f"--vision-encoder {value!r} must be NAME:PRETRAINED, where PRETRAINED is an "
            f"open_clip tag, a weights file or 'random' (example: {OPENAI_VIT_L_14}:openai)"
        )
    return name, None if pretrained == "random" else pretrained


def resolve_checkpoint(preset: FlamingoPreset, override: str | None) -> Path:
    """Return the local path of the trained weights: the override, or the hub file (cached)."""
    if override is not None:
        path = Path(override).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            return resolve_file(str(path), preset.checkpoint_file, context="--checkpoint")
        # Not a local path: a hub repo id holding the preset's checkpoint file.
        return resolve_file(override, preset.checkpoint_file, context="--checkpoint")
    if preset.checkpoint_repo is None:
        raise InputError(f"model {preset.name} has no released checkpoint; pass --checkpoint PATH")
    return resolve_file(preset.checkpoint_repo, preset.checkpoint_file, context=f"model {preset.name}")


def load_openflamingo(preset: FlamingoPreset, options: ModelOptions):
    """Build `preset` with `options` applied; return a FlamingoModel ready to evaluate."""
    from flamingo_eval.models.factory import build_flamingo
    from flamingo_eval.models.flamingo_adapter import FlamingoModel

    precision = resolve_precision(options.precision)
    device = resolve_device(options.device)
    vision_name, vision_pretrained = (
        parse_vision_encoder(options.vision_encoder, preset.vision_encoder)
        if options.vision_encoder is not None
        else (preset.vision_encoder, preset.vision_pretrained)
    )
    lm_source = options.lm_path or preset.language_model
    tokenizer_source = options.tokenizer_path or options.lm_path or preset.tokenizer
    checkpoint_path = resolve_checkpoint(preset, options.checkpoint)

    tokenizer = load_tokenizer(tokenizer_source, options.trust_remote_code)
    lang_model, lm_description = load_causal_lm(
        lm_source, trust_remote_code=options.trust_remote_code, dtype=precision.weights_dtype
    )
    try:
        model, image_processor, tokenizer = build_flamingo(
            vision_encoder=vision_name,
            vision_pretrained=vision_pretrained,
            lang_model=lang_model,
            tokenizer=tokenizer,
            cross_attn_every_n_layers=preset.cross_attn_every_n_layers,
            decoder_layers_attr=preset.decoder_layers_attr or decoder_layers_attr_for(lang_model),
        )
    except RuntimeError as error:
        # open_clip reports unknown tags and unreadable weight files as RuntimeError.
        raise InputError(f"vision encoder {vision_name}:{vision_pretrained}: {error}") from None
    report = load_flamingo_checkpoint(model, checkpoint_path)

    identity = {
        "preset": preset.name,
        "vision_encoder": vision_name,
        "vision_pretrained": vision_pretrained,
        "language_model": lm_description,
        "tokenizer": tokenizer_source,
        "cross_attn_every_n_layers": preset.cross_attn_every_n_layers,
        "checkpoint": {"path": report.path, "sha256": report.sha256, "keys": report.loaded_keys},
    }
    return FlamingoModel(
        model,
        image_processor,
        tokenizer,
        name=preset.name,
        device=device,
        dtype=precision.weights_dtype,
        autocast_dtype=precision.autocast_dtype,
        precision=precision.name,
        identity=identity,
    )
