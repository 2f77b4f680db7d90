"""The one factory that assembles Flamingo models from a vision tower and a causal LM.

It uses open_flamingo's `Flamingo` class and LM mixin but not its `create_model_and_transforms`,
which always passes `trust_remote_code=True` to transformers and always downloads weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import open_clip
import torch
from transformers import PreTrainedTokenizerBase

from flamingo_eval.models.base import END_OF_CHUNK_TOKEN, IMAGE_TOKEN
from flamingo_eval.models.flamingo_lm import extend_with_flamingo

try:
    from open_flamingo.src.flamingo import Flamingo
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "open_flamingo is not installed. It must be installed without its pinned dependencies: "
        "pip install --no-deps open-flamingo==2.0.1 (after `pip install -e .`)"
    ) from error

logger = logging.getLogger(__name__)

OPEN_CLIP_CONFIGS = Path(__file__).resolve().parent / "assets" / "open_clip"
PAD_TOKEN = "<PAD>"


def register_open_clip_configs() -> None:
    """Make the vision tower configs shipped with flamingo-eval known to open_clip by name."""
    for config_file in sorted(OPEN_CLIP_CONFIGS.glob("*.json")):
        if open_clip.get_model_config(config_file.stem) is None:
            open_clip.add_model_config(config_file)


def add_flamingo_tokens(tokenizer: PreTrainedTokenizerBase) -> None:
    """Add `<|endofchunk|>`, `<image>` and, when missing, a pad token, as OpenFlamingo does."""
    tokenizer.add_special_tokens({"additional_special_tokens": [END_OF_CHUNK_TOKEN, IMAGE_TOKEN]})
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    tokenizer.padding_side = "left"


def build_vision_encoder(name: str, pretrained: str | None):
    """Create an open_clip model and its evaluation transform; `pretrained=None` is random."""
    register_open_clip_configs()
    root_logger = logging.getLogger()
    silence_random_init = _DropMessage("No pretrained weights loaded")
    if pretrained is None:
        # open_clip warns on the root logger that the weights are random, which is intended here.
        root_logger.addFilter(silence_random_init)
    try:
        clip_model, _, image_processor = open_clip.create_model_and_transforms(
            name, pretrained=pretrained
        )
    finally:
        root_logger.removeFilter(silence_random_init)
    clip_model.visual.output_tokens = True
    vis_dim = open_clip.get_model_config(name)["vision_cfg"]["width"]
    return clip_model, image_processor, vis_dim


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def build_flamingo(
    *,
    vision_encoder: str,
    vision_pretrained: str | None,
    lang_model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    cross_attn_every_n_layers: int,
    decoder_layers_attr: str | None = None,
):
    """Assemble a Flamingo model; return (model, image_processor, tokenizer).

    The tokenizer gains the Flamingo tokens and the LM's embeddings are resized to match.
    """
    clip_model, image_processor, vis_dim = build_vision_encoder(vision_encoder, vision_pretrained)
    add_flamingo_tokens(tokenizer)
    extend_with_flamingo(lang_model, decoder_layers_attr)
    if lang_model.get_input_embeddings().num_embeddings != len(tokenizer):
        lang_model.resize_token_embeddings(len(tokenizer))
    model = Flamingo(
        clip_model,
        lang_model,
        eoc_token_id=tokenizer.convert_tokens_to_ids(END_OF_CHUNK_TOKEN),
        media_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vis_dim=vis_dim,
        cross_attn_every_n_layers=cross_attn_every_n_layers,
    )
    model.requires_grad_(False)
    model.eval()
    parameter_count = sum(parameter.numel() for parameter in model.parameters())
    logger.info("built Flamingo model with %d parameters", parameter_count)
    return model, image_processor, tokenizer
