"""A tiny random IDEFICS saved with save_pretrained (model and processor), for loading tests."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import IdeficsConfig, IdeficsForVisionText2Text, IdeficsImageProcessor, IdeficsProcessor

from flamingo_eval.models.tiny import tiny_tokenizer

IMAGE_SIZE = 32


def build_tiny_idefics(seed: int = 0):
    """Return (model, processor): 2 text layers, cross-attention every layer, non-zero gates."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    tokenizer.add_special_tokens(
        {"bos_token": "<s>", "additional_special_tokens": ["<fake_token_around_image>", "<image>"]}
    )
    tokenizer.padding_side = "left"
    processor = IdeficsProcessor(
        IdeficsImageProcessor(image_size=IMAGE_SIZE, image_num_channels=3), tokenizer
    )
    config = IdeficsConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=1024,
        cross_layer_interval=1,
        use_resampler=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        vision_config={
            "embed_dim": 32,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
        },
        perceiver_config={
            "resampler_n_latents": 4,
            "resampler_depth": 1,
            "resampler_n_heads": 2,
            "resampler_head_dim": 8,
        },
    )
    model = IdeficsForVisionText2Text(config).eval()
    # The gates start at zero, which would make a random model ignore its images.
    with torch.no_grad():
        for layer in model.model.gated_cross_attn_layers:
            layer.alpha_cross_attn.fill_(0.8)
            layer.alpha_dense.fill_(-0.5)
    return model, processor


def save_tiny_idefics(folder: Path):
    model, processor = build_tiny_idefics()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor
