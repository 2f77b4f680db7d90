"""The `tiny` preset: a real open_flamingo `Flamingo` with random weights, built offline.

Vision: a 2-layer ViT (64 px images, 8 px patches) from an open_clip config shipped in
`assets/open_clip`. Language: a 2-layer LLaMA with the byte-level BPE tokenizer in
`assets/tiny_tokenizer`. Weights come from a fixed seed, and the cross-attention gates, which
open_flamingo initialises to zero, are set to a fixed non-zero value so images change the output.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from open_flamingo.src.helpers import GatedCrossAttentionBlock, PerceiverResampler

from flamingo_eval.models.factory import PAD_TOKEN, build_flamingo

TOKENIZER_FILE = Path(__file__).resolve().parent / "assets" / "tiny_tokenizer" / "tokenizer.json"
VISION_ENCODER = "tiny-vit"
GATE_VALUE = 1.0
SEED = 0
MAX_POSITIONS = 2048  # 32-shot VQA prompts on the sample data are about 700 tokens
# open_flamingo sizes the perceiver (6 layers, 64 latents) and the cross-attention (8 heads of
# 64) for billion-parameter models. At hidden size 64 they would cost most of the compute, so
# the tiny model swaps in smaller modules of the same classes.
PERCEIVER = {"depth": 2, "dim_head": 16, "heads": 4, "num_latents": 16}
CROSS_ATTENTION = {"dim_head": 16, "heads": 4, "ff_mult": 2}


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Load the shipped tokenizer; it already contains the Flamingo special tokens."""
    return PreTrainedTokenizerFast(
        tokenizer_file=str(TOKENIZER_FILE),
        eos_token="<|endoftext|>",
        pad_token=PAD_TOKEN,
        padding_side="left",
    )


def tiny_lm_config(tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=MAX_POSITIONS,
        initializer_range=0.2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def shrink_flamingo_modules(model) -> None:
    """Replace the perceiver and gated cross-attention blocks with the tiny sizes above."""
    model.perceiver = PerceiverResampler(dim=model.vis_dim, **PERCEIVER)
    lang_encoder = model.lang_encoder
    lang_encoder.gated_cross_attn_layers = torch.nn.ModuleList(
        GatedCrossAttentionBlock(dim=model.lang_dim, dim_visual=model.vis_dim, **CROSS_ATTENTION)
        if layer is not None
        else None
        for layer in lang_encoder.gated_cross_attn_layers
    )
    lang_encoder.init_flamingo_layers(gradient_checkpointing=False)
    model.requires_grad_(False)
    model.eval()


def build_tiny(seed: int = SEED, gate_value: float = GATE_VALUE):
    """Build the tiny model; return (model, image_processor, tokenizer)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        tokenizer = tiny_tokenizer()
        lang_model = LlamaForCausalLM(tiny_lm_config(tokenizer))
        model, image_processor, tokenizer = build_flamingo(
            vision_encoder=VISION_ENCODER,
            vision_pretrained=None,
            lang_model=lang_model,
            tokenizer=tokenizer,
            cross_attn_every_n_layers=1,
        )
        shrink_flamingo_modules(model)
    finally:
        torch.random.set_rng_state(generator_state)
    with torch.no_grad():
        for layer in model.lang_encoder.gated_cross_attn_layers:
            if layer is not None:
                layer.attn_gate.fill_(gate_value)
                layer.ff_gate.fill_(gate_value)
    return model, image_processor, tokenizer
