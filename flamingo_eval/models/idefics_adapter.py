"""Adapter for IDEFICS (v1), transformers' Flamingo re-implementation `IdeficsForVisionText2Text`.

Prompt format. The harness builds OpenFlamingo prompts; this adapter translates them to IDEFICS's
base (non-chat) format, with no "User:"/"Assistant:" turns:
- each `<image>` marker becomes an image item, which `IdeficsProcessor` writes as
  `<fake_token_around_image><image><fake_token_around_image>` (adjacent images share the fake
  token between them);
- `<|endofchunk|>` is removed, because IDEFICS has no such token; the task's separator ("\\n" in
  generation tasks) still ends each demonstration;
- the processor prepends the BOS token and strips spaces at both ends of each text item.
Generation stops at the EOS token and, for tokenizers that have it, `<end_of_utterance>`.

Each request is encoded on its own and the batch is then left-padded by hand, so the image
attention mask of a request does not depend on its batch. The model derives position ids from
the attention mask.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from flamingo_eval.errors import InputError
from flamingo_eval.models.base import END_OF_CHUNK_TOKEN, IMAGE_TOKEN, EvalModel, Generation, Request
from flamingo_eval.models.options import ModelOptions
from flamingo_eval.models.precision import autocast, resolve_device, resolve_precision

logger = logging.getLogger(__name__)

IDEFICS_PRESETS = {
    "idefics-9b": "HuggingFaceM4/idefics-9b",
    "idefics-9b-instruct": "HuggingFaceM4/idefics-9b-instruct",
    "idefics-80b": "HuggingFaceM4/idefics-80b",
    "idefics-80b-instruct": "HuggingFaceM4/idefics-80b-instruct",
}
END_OF_UTTERANCE_TOKEN = "<end_of_utterance>"


def prompt_items(prompt: str, images: list[Any]) -> list[Any]:
    """Translate an OpenFlamingo prompt into IDEFICS's list of text and image items."""
    chunks = prompt.replace(END_OF_CHUNK_TOKEN, "").split(IMAGE_TOKEN)
    if len(chunks) - 1 != len(images):
        raise ValueError(f"prompt has {len(chunks) - 1} {IMAGE_TOKEN} markers but {len(images)} images")
    items: list[Any] = []
    for index, chunk in enumerate(chunks):
        if index > 0:
            items.append(images[index - 1])
        if chunk:
            items.append(chunk)
    return items


class IdeficsModel(EvalModel):
    """Evaluate an `IdeficsForVisionText2Text` with its processor, left-padded batches."""

    def __init__(
        self,
        model: torch.nn.Module,
        processor,
        *,
        name: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        autocast_dtype: torch.dtype | None = None,
        precision: str | None = None,
        identity: dict[str, Any] | None = None,
    ):
        self.model = model.to(device=device, dtype=dtype).eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.name = name
        self.device = torch.device(device)
        self.dtype = dtype
        self.autocast_dtype = autocast_dtype
        self.precision = precision or str(dtype).replace("torch.", "")
        self._identity = dict(identity or {})
        self.pad_token_id = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )
        self.stop_token_ids = [self.tokenizer.eos_token_id]
        if END_OF_UTTERANCE_TOKEN in self.tokenizer.get_vocab():
            self.stop_token_ids.append(self.tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE_TOKEN))

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": str(self.dtype).replace("torch.", ""),
            "precision": self.precision,
            "device": str(self.device),
            "prompt_format": "idefics-base",
            **self._identity,
        }

    # Inputs ---------------------------------------------------------------------------------

    def encode_request(self, request: Request) -> dict[str, torch.Tensor]:
        """Encode one request without padding: input_ids (T,), pixel_values (N, C, H, W) and
        image_attention_mask (T, N)."""
        images = [image.open() for image in request.images]
        encoded = self.processor(
            text=[prompt_items(request.prompt, images)],
            add_end_of_utterance_token=False,
            return_tensors="pt",
        )
        return {
            "input_ids": encoded["input_ids"][0].long(),
            "pixel_values": encoded["pixel_values"][0],
            "image_attention_mask": encoded["image_attention_mask"][0].long(),
        }

    def pad_batch(self, encoded: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Left-pad token rows and zero-pad image slots to the batch's maximum."""
        length = max(item["input_ids"].shape[0] for item in encoded)
        num_images = max(1, max(item["pixel_values"].shape[0] for item in encoded))
        image_shape = encoded[0]["pixel_values"].shape[1:]
        batch = len(encoded)
        input_ids = torch.full((batch, length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        image_attention_mask = torch.zeros((batch, length, num_images), dtype=torch.long)
        pixel_values = torch.zeros((batch, num_images, *image_shape))
        for row, item in enumerate(encoded):
            size = item["input_ids"].shape[0]
            input_ids[row, length - size :] = item["input_ids"]
            attention_mask[row, length - size :] = 1
            item_mask = item["image_attention_mask"]
            image_attention_mask[row, length - size :, : item_mask.shape[1]] = item_mask
            pixel_values[row, : item["pixel_values"].shape[0]] = item["pixel_values"]
        return {
            "input_ids": input_ids.to(self.device),
            "attention_mask": attention_mask.to(self.device),
            "image_attention_mask": image_attention_mask.to(self.device),
            "pixel_values": pixel_values.to(device=self.device, dtype=self.dtype),
        }

    # Generation -----------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self,
        requests: list[Request],
        *,
        num_beams: int,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        length_penalty: float = 0.0,
    ) -> list[Generation]:
        inputs = self.pad_batch([self.encode_request(request) for request in requests])
        with autocast(self.device, self.autocast_dtype):
            output = self.model.generate(
                **inputs,
                eos_token_id=self.stop_token_ids,
                pad_token_id=self.pad_token_id,
                num_beams=num_beams,
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens,
                length_penalty=length_penalty,
                do_sample=False,
                early_stopping=False,
                return_dict_in_generate=True,
                output_scores=True,
            )
        new_tokens = output.sequences[:, inputs["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        logprobs = sequence_logprobs(output, new_tokens, num_beams, self.stop_token_ids)
        return [Generation(text, logprob) for text, logprob in zip(texts, logprobs)]

    # Ranking --------------------------------------------------------------------------------

    @torch.inference_mode()
    def rank(self, requests: list[Request], class_names: list[str]) -> list[list[float]]:
        """Score class names by a full forward of prompt + class name, one per class.

        The class name is tokenized on its own and appended to the prompt's tokens (as the
        Flamingo adapter does); its tokens attend to the prompt's last image.
        """
        encoded = [self.encode_request(request) for request in requests]
        scores = [[0.0] * len(class_names) for _ in requests]
        for class_index, class_name in enumerate(class_names):
            class_ids = torch.tensor(
                self.tokenizer(class_name, add_special_tokens=False)["input_ids"], dtype=torch.long
            )
            if class_ids.numel() == 0:
                raise InputError(f"class name {class_name!r} tokenizes to no tokens")
            extended = [_append_tokens(item, class_ids) for item in encoded]
            inputs = self.pad_batch(extended)
            with autocast(self.device, self.autocast_dtype):
                logits = self.model(**inputs, use_cache=False).logits.float()
            count = class_ids.numel()
            logprobs = torch.log_softmax(logits[:, -count - 1 : -1], dim=-1)
            targets = inputs["input_ids"][:, -count:]
            class_logprobs = logprobs.gather(-1, targets[..., None])[..., 0].mean(dim=-1)
            for row, value in enumerate(class_logprobs.tolist()):
                scores[row][class_index] = value
        return scores


def _append_tokens(item: dict[str, torch.Tensor], token_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Append tokens to an encoded request; they see the same images as its last token."""
    last_row = item["image_attention_mask"][-1:].expand(token_ids.numel(), -1)
    return {
        **item,
        "input_ids": torch.cat([item["input_ids"], token_ids]),
        "image_attention_mask": torch.cat([item["image_attention_mask"], last_row]),
    }


def sequence_logprobs(output, new_tokens: torch.Tensor, num_beams: int, stop_ids: list[int]) -> list[float]:
    """Return the decoding's log-probability of each returned sequence, up to its stop token."""
    if num_beams > 1:
        # With length_penalty 0 this is the sum of the tokens' log-probabilities.
        return output.sequences_scores.float().tolist()
    step_logprobs = torch.stack([torch.log_softmax(s.float(), dim=-1) for s in output.scores], dim=1)
    chosen = step_logprobs.gather(-1, new_tokens[:, : step_logprobs.shape[1], None])[..., 0]
    stops = torch.tensor(stop_ids, device=new_tokens.device)
    finished = torch.zeros(new_tokens.shape[0], dtype=torch.bool, device=new_tokens.device)
    total = torch.zeros(new_tokens.shape[0], device=new_tokens.device)
    for step in range(chosen.shape[1]):
        total += torch.where(finished, torch.zeros_like(total), chosen[:, step])
        finished |= torch.isin(new_tokens[:, step], stops)
    return total.tolist()


def load_idefics(name: str, options: ModelOptions) -> IdeficsModel:
    """Load an IDEFICS preset, or the folder or hub id given as --checkpoint."""
    from transformers import AutoProcessor, IdeficsForVisionText2Text

    from flamingo_eval.models.hf_loading import read_config

    if options.lm_path or options.vision_encoder:
        raise InputError(
            f"model {name}: --lm-path and --vision-encoder do not apply to IDEFICS; pass the "
            "whole model's folder or hub id as --checkpoint"
        )
    precision = resolve_precision(options.precision)
    device = resolve_device(options.device)
    source = options.checkpoint or IDEFICS_PRESETS[name]
    processor_source = options.tokenizer_path or source
    config = read_config(source, context=f"model {name}")
    if config.get("model_type") != "idefics":
        raise InputError(
            f"model {name}: {source} has model_type {config.get('model_type')!r}, not 'idefics'"
        )
    try:
        processor = AutoProcessor.from_pretrained(processor_source)
        model, info = IdeficsForVisionText2Text.from_pretrained(
            source, dtype=precision.weights_dtype, output_loading_info=True
        )
    except (OSError, ValueError) as error:
        raise InputError(f"model {name}: {source} could not be loaded: {error}") from None
    if info.get("missing_keys") or info.get("mismatched_keys"):
        raise InputError(
            f"model {name}: {source} lacks weights or has wrong shapes: "
            f"missing {sorted(info.get('missing_keys', []))[:20]}, "
            f"wrong shape {[str(m) for m in info.get('mismatched_keys', [])][:20]}"
        )
    processor.tokenizer.padding_side = "left"
    identity = {"preset": name, "model": source, "processor": processor_source}
    return IdeficsModel(
        model,
        processor,
        name=name,
        device=device,
        dtype=precision.weights_dtype,
        autocast_dtype=precision.autocast_dtype,
        precision=precision.name,
        identity=identity,
    )
