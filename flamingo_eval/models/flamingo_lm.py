"""Turn a Hugging Face causal LM into open_flamingo's cross-attention language model."""

from __future__ import annotations

import torch
from open_flamingo.src.flamingo_lm import FlamingoLMMixin

# Dotted path of each architecture's list of decoder blocks (the attribute open_flamingo wraps).
DECODER_LAYERS_ATTR = {
    "LlamaForCausalLM": "model.layers",
    "GPTNeoXForCausalLM": "gpt_neox.layers",
    "OPTForCausalLM": "model.decoder.layers",
    "MptForCausalLM": "transformer.blocks",
    "MPTForCausalLM": "transformer.blocks",
    "GPTJForCausalLM": "transformer.h",
}


class FlamingoCausalLMMixin(FlamingoLMMixin):
    """open_flamingo's LM mixin with `attention_mask` optional and `position_ids` declared.

    From transformers 5.18, `generate()` may drop an all-ones attention mask and call `forward`
    without it, which the upstream mixin's positional `attention_mask` parameter rejects.
    Declaring `position_ids` makes `generate()` derive positions from the attention mask, so a
    left-padded prompt gets the same positions as the same prompt unpadded.
    """

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs,
    ):
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        return super().forward(input_ids, attention_mask, **kwargs)


def extend_with_flamingo(lang_model: torch.nn.Module, decoder_layers_attr: str | None) -> str:
    """Mix the Flamingo LM mixin into `lang_model` in place; return the decoder layers path.

    Like open_flamingo's `extend_instance`, this swaps the instance's class for a subclass, so
    the mixin's `forward` runs before the model's own.
    """
    base_class = type(lang_model)
    if decoder_layers_attr is None:
        decoder_layers_attr = DECODER_LAYERS_ATTR.get(base_class.__name__)
        if decoder_layers_attr is None:
            raise ValueError(
                f"unknown decoder layout for {base_class.__name__}; pass decoder_layers_attr, "
                "the dotted path of the model's list of decoder blocks (e.g. 'model.layers')"
            )
    lang_model.__class__ = type(base_class.__name__, (FlamingoCausalLMMixin, base_class), {})
    lang_model.set_decoder_layers_attr_name(decoder_layers_attr)
    return decoder_layers_attr
