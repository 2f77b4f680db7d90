"""Tiny random models saved in the layouts real checkpoints use, for the loading tests.

Each family's language model and tokenizer are saved with `save_pretrained`, the vision tower as
an open_clip state dict, and the trained parameters as an OpenFlamingo-style `checkpoint.pt`
(the keys OpenFlamingo's training keeps: trainable parameters plus anything named "embed",
without the vision tower and without the `gated_cross_attn_layers` aliases, nested under
"model_state_dict" with DDP's "module." prefix).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image
from transformers import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MptConfig,
    MptForCausalLM,
    OPTConfig,
    OPTForCausalLM,
)

from flamingo_eval.data.example import ImageRef
from flamingo_eval.models.base import Request
from flamingo_eval.models.factory import build_flamingo, register_open_clip_configs
from flamingo_eval.models.flamingo_adapter import FlamingoModel
from flamingo_eval.models.tiny import tiny_tokenizer

VISION = "tiny-vit"
DEMO = "<image>Question:What is in the picture? Short answer:a red square<|endofchunk|>\n"


def lm_config(family: str, vocab_size: int):
    common = {"vocab_size": vocab_size, "max_position_embeddings": 512}
    if family == "gpt_neox":
        return GPTNeoXForCausalLM, GPTNeoXConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            tie_word_embeddings=False, **common,
        )
    if family == "llama":
        return LlamaForCausalLM, LlamaConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            intermediate_size=64, tie_word_embeddings=False, **common,
        )
    if family == "opt":
        return OPTForCausalLM, OPTConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64,
            word_embed_proj_dim=32, **common,
        )
    if family == "mpt":
        # Larger than the tokenizer, like MPT-1B's 50432 rows for 50280 tokens: the factory
        # shrinks the embeddings to the tokenizer, as OpenFlamingo's does.
        return MptForCausalLM, MptConfig(
            d_model=32, n_heads=4, n_layers=4, expansion_ratio=2, max_seq_len=512,
            vocab_size=vocab_size + 14,
        )
    raise ValueError(family)


@dataclass
class SavedFlamingo:
    """A tiny Flamingo in memory and the files it was saved to."""

    adapter: FlamingoModel
    lm_dir: Path
    vision_file: Path
    checkpoint: Path
    cross_attn_every_n_layers: int


def openflamingo_style_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Select the tensors OpenFlamingo's training saves, under their full model names."""
    model.requires_grad_(False)
    model.perceiver.requires_grad_(True)
    model.lang_encoder.gated_cross_attn_layers.requires_grad_(True)
    model.lang_encoder.get_input_embeddings().requires_grad_(True)
    trainable = {name for name, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}
    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("vision_encoder.") or "lang_encoder.gated_cross_attn_layers." in name:
            continue
        if name in trainable or "embed" in name:
            state[name] = tensor.clone()
    model.requires_grad_(False)
    return state


def save_tiny_flamingo(family: str, folder: Path, cross_attn_every_n_layers: int, seed: int = 0) -> SavedFlamingo:
    """Build a tiny Flamingo of an LM family, save its parts, and return it with their paths."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    lm_class, config = lm_config(family, len(tokenizer))
    lang_model = lm_class(config)
    lm_dir = folder / f"{family}-lm"
    lang_model.save_pretrained(lm_dir)
    tokenizer.save_pretrained(lm_dir)

    model, image_processor, tokenizer = build_flamingo(
        vision_encoder=VISION,
        vision_pretrained=None,
        lang_model=lang_model,
        tokenizer=tokenizer,
        cross_attn_every_n_layers=cross_attn_every_n_layers,
    )
    with torch.no_grad():
        for layer in model.lang_encoder.gated_cross_attn_layers:
            if layer is not None:
                layer.attn_gate.fill_(0.7)
                layer.ff_gate.fill_(-0.4)

    register_open_clip_configs()
    clip_model = open_clip.create_model(VISION, pretrained=None)
    clip_model.visual.load_state_dict(model.vision_encoder.state_dict())
    vision_file = folder / f"{family}-vision.pt"
    torch.save(clip_model.state_dict(), vision_file)

    checkpoint = folder / f"{family}-checkpoint.pt"
    state = openflamingo_style_state(model)
    torch.save({"model_state_dict": {f"module.{key}": value for key, value in state.items()}}, checkpoint)

    adapter = FlamingoModel(model, image_processor, tokenizer, name=f"memory-{family}")
    return SavedFlamingo(adapter, lm_dir, vision_file, checkpoint, cross_attn_every_n_layers)


def write_images(folder: Path, count: int = 4, size: int = 64) -> list[ImageRef]:
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(0)
    refs = []
    for index in range(count):
        pixels = generator.integers(0, 256, (size, size, 3), dtype=np.uint8)
        path = folder / f"{index}.png"
        Image.fromarray(pixels).save(path)
        refs.append(ImageRef(key=str(index), path=path))
    return refs


def sample_requests(images: list[ImageRef]) -> list[Request]:
    """Three requests with 0, 1 and 2 demonstrations, so batches need padding."""
    requests = []
    for shots in range(3):
        prompt = DEMO * shots + "<image>Question:What is it" + "?" * (shots + 1) + " Short answer:"
        requests.append(Request(prompt, tuple(images[1 : 1 + shots]) + (images[0],)))
    return requests


def predictions(model, requests: list[Request]) -> dict:
    """Greedy and beam generations plus class scores, as plain values."""
    greedy = model.generate(requests, num_beams=1, max_new_tokens=4)
    beams = model.generate(requests, num_beams=2, max_new_tokens=3)
    return {
        "greedy": [(g.text, g.logprob) for g in greedy],
        "beams": [(g.text, g.logprob) for g in beams],
        "rank": model.rank(requests, ["yes", "no", "red square"]),
    }
