"""Class scoring with a shared prefix: encode each prompt once, then score every class name
against a copy of the prompt's key/value cache.

A full-sequence forward per class costs (number of classes) x (prompt length) tokens per item.
This path costs one prompt forward plus (number of classes) x (class name length) tokens. The class
tokens see the same context as in a full forward: the prompt's cache, its attention mask
(left padding stays masked), positions that continue from the prompt's last real token, and
the prompt's last image for cross-attention.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from transformers.cache_utils import DynamicCache

from flamingo_eval.models.base import Request

if TYPE_CHECKING:
    from flamingo_eval.models.flamingo_adapter import FlamingoModel


def _layer_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Return (keys, values) per layer from a transformers cache or legacy tuples."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return [(keys, values) for keys, values in cache]


def attends_immediate_media_only(decoder_layers) -> bool:
    """Return whether every cross-attention layer lets text attend only to its latest image."""
    layers = [layer.gated_cross_attn_layer for layer in decoder_layers if layer.gated_cross_attn_layer is not None]
    return all(getattr(layer.attn, "only_attend_immediate_media", False) for layer in layers)


def expand_row(layers: list[tuple[torch.Tensor, torch.Tensor]], row: int, repeats: int) -> DynamicCache:
    """Build a new cache holding `row` of `layers` `repeats` times.

    `expand` makes views, not copies, and the class forward appends to the new cache with
    torch.cat, so the prompt's cache is never modified. Reusing one mutated cache for several
    class batches, as OpenFlamingo's cached ranking does, scores later classes against the keys
    of earlier ones.
    """
    expanded = [
        (keys[row : row + 1].expand(repeats, -1, -1, -1), values[row : row + 1].expand(repeats, -1, -1, -1))
        for keys, values in layers
    ]
    return DynamicCache(ddp_cache_data=expanded)


@torch.inference_mode()
def score_classes_with_shared_prefix(
    adapter: "FlamingoModel", requests: list[Request], class_names: list[str]
) -> list[list[float]]:
    """Mean log-probability of each class name's tokens after each request's prompt."""
    from flamingo_eval.models.flamingo_adapter import position_ids_from_mask

    tokenizer = adapter.tokenizer
    lang_encoder = adapter.model.lang_encoder
    class_ids = [tokenizer(name, add_special_tokens=False)["input_ids"] for name in class_names]
    if any(len(ids) == 0 for ids in class_ids):
        empty = class_names[[len(ids) for ids in class_ids].index(0)]
        raise ValueError(f"class name {empty!r} has no tokens")

    input_ids, attention_mask = adapter.encode_text([request.prompt for request in requests])
    prefix_positions = position_ids_from_mask(attention_mask)
    media = adapter.media_for(requests)
    with adapter.conditioned_on(media, cached_media_locations=False), adapter.autocast():
        prefix = lang_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=prefix_positions,
            use_cache=True,
        )
        media_locations = input_ids == adapter.model.media_token_id
    layers = _layer_tensors(prefix.past_key_values)
    first_token_logprobs = torch.log_softmax(prefix.logits[:, -1].float(), dim=-1)
    next_positions = attention_mask.long().sum(dim=-1)

    # Class names of similar token length share a batch, so little of it is padding.
    by_length = sorted(range(len(class_ids)), key=lambda index: (len(class_ids[index]), index))
    scores = [[0.0] * len(class_names) for _ in requests]
    for start in range(0, len(by_length), adapter.class_batch_size):
        indices = by_length[start : start + adapter.class_batch_size]
        chunk_scores = _score_chunk(
            adapter, [class_ids[index] for index in indices], layers, media, media_locations,
            attention_mask, next_positions, first_token_logprobs,
        )
        for row, row_scores in enumerate(chunk_scores):
            for index, value in zip(indices, row_scores):
                scores[row][index] = value
    return scores


def _score_chunk(
    adapter: "FlamingoModel",
    chunk: list[list[int]],
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    media: torch.Tensor,
    media_locations: torch.Tensor,
    prefix_mask: torch.Tensor,
    next_positions: torch.Tensor,
    first_token_logprobs: torch.Tensor,
) -> list[list[float]]:
    """Score one batch of class names against every request's prefix; one row per request."""
    device = adapter.device
    count = len(chunk)
    length = max(len(ids) for ids in chunk)
    # Class names are right-padded: the padding comes after every real token, so causal
    # attention keeps it out of the real tokens' scores, and it is masked out of the mean.
    tokens = torch.full((count, length), adapter.tokenizer.pad_token_id, dtype=torch.long)
    real = torch.zeros((count, length), dtype=torch.bool)
    for index, ids in enumerate(chunk):
        tokens[index, : len(ids)] = torch.tensor(ids)
        real[index, : len(ids)] = True
    tokens, real = tokens.to(device), real.to(device)
    lengths = real.sum(dim=-1)

    lang_encoder = adapter.model.lang_encoder
    decoder_layers = lang_encoder._get_decoder_layers()
    results = []
    for row in range(prefix_mask.shape[0]):
        first = first_token_logprobs[row, tokens[:, 0]]
        total = first.clone()
        if length > 1:
            mask = torch.cat([prefix_mask[row].expand(count, -1), real], dim=-1)
            positions = next_positions[row] + torch.arange(length, device=device).expand(count, -1)
            # Class tokens follow the prompt's last image and, in Flamingo's cross-attention
            # (only_attend_immediate_media), attend to that image alone. Conditioning on just
            # that image, marked as the first and only media, gives the same attention while
            # projecting one image's latents per class instead of all of the prompt's.
            lang_encoder._use_cached_vision_x = True
            if attends_immediate_media_only(decoder_layers):
                image_count = int(media_locations[row].sum())
                last_image = max(image_count - 1, 0)
                row_media = media[row : row + 1, last_image : last_image + 1].expand(count, -1, -1, -1)
                row_locations = torch.full((count, 1), image_count > 0, dtype=torch.bool, device=device)
            else:
                row_media = media[row : row + 1].expand(count, *media.shape[1:])
                row_locations = media_locations[row : row + 1].expand(count, -1)
            for layer in decoder_layers:
                layer.condition_vis_x(row_media)
                layer.condition_media_locations(row_locations)
            try:
                with adapter.autocast():
                    logits = lang_encoder(
                        input_ids=tokens,
                        attention_mask=mask,
                        position_ids=positions,
                        past_key_values=expand_row(layers, row, count),
                        use_cache=True,
                    ).logits.float()
            finally:
                lang_encoder.clear_conditioned_layers()
                lang_encoder._use_cached_vision_x = False
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
            following = logprobs.gather(-1, tokens[:, 1:, None])[..., 0]
            total = total + (following * real[:, 1:]).sum(dim=-1)
        results.append((total / lengths).tolist())
    return results
