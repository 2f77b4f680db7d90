"""Adapter that runs open_flamingo `Flamingo` models for the harness: generation and ranking."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable

import torch

from flamingo_eval.data.example import ImageRef
from flamingo_eval.models.base import EvalModel, Generation, Request
from flamingo_eval.models.media_cache import PLAN_AHEAD_IMAGES, MediaCache, PixelPrefetcher
from flamingo_eval.models.precision import autocast
from flamingo_eval.models.shared_prefix import score_classes_with_shared_prefix

DEFAULT_IMAGE_CACHE_SIZE = 4096  # media features kept; one 64x1024 bf16 feature is 128 KiB
DEFAULT_CLASS_BATCH_SIZE = 256  # class names scored per forward against a shared prefix


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Number real tokens 0, 1, 2, ... from the left; padding gets position 0."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.clamp(min=0)


class FlamingoModel(EvalModel):
    """Evaluate an open_flamingo `Flamingo` with left-padded batches.

    Every forward gets an attention mask and position ids derived from it, so a request's
    result does not depend on how much padding its batch adds. OpenFlamingo's own eval passes
    neither to its ranking forwards: a named deviation recorded in each run's metadata.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        image_processor: Callable,
        tokenizer,
        *,
        name: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        autocast_dtype: torch.dtype | None = None,
        precision: str | None = None,
        identity: dict[str, Any] | None = None,
        fast: bool = True,
        image_cache_size: int = DEFAULT_IMAGE_CACHE_SIZE,
        class_batch_size: int = DEFAULT_CLASS_BATCH_SIZE,
    ):
        # Module.to(dtype) casts only floating-point parameters and buffers.
        self.model = model.to(device=device, dtype=dtype).eval()
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.name = name
        self.device = torch.device(device)
        self.dtype = dtype
        self.autocast_dtype = autocast_dtype
        self.precision = precision or str(dtype).replace("torch.", "")
        self._identity = dict(identity or {})
        self.end_of_chunk_id = model.eoc_token_id
        # fast=False keeps the plain path that benchmarks compare against: images re-encoded
        # per request and per beam, and one full forward per class name.
        self.fast = fast
        self.class_batch_size = class_batch_size
        self.media_cache = MediaCache(image_cache_size)
        self.images_encoded = 0
        self._prefetcher = PixelPrefetcher(self.image_processor)

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": str(self.dtype).replace("torch.", ""),
            "precision": self.precision,
            "device": str(self.device),
            **self._identity,
        }

    def autocast(self):
        """Autocast context of the amp precision modes; a no-op context otherwise."""
        return autocast(self.device, self.autocast_dtype)

    # Inputs ---------------------------------------------------------------------------------

    def encode_text(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenize prompts with left padding; return input ids and a boolean attention mask."""
        encoded = self.tokenizer(
            prompts, padding="longest", return_tensors="pt", padding_side="left"
        )
        input_ids = encoded["input_ids"].to(self.device)
        attention_mask = encoded["attention_mask"].to(self.device).bool()
        return input_ids, attention_mask

    def load_pixels(self, images: list[ImageRef]) -> torch.Tensor:
        """Open and preprocess images; return a float tensor (num_images, C, H, W)."""
        return torch.stack([self.image_processor(image.open()) for image in images])

    def vision_batch(self, requests: list[Request]) -> torch.Tensor:
        """Stack each request's images into Flamingo's (B, T_img, 1, C, H, W) layout.

        Requests with fewer images than the longest are padded with zero images. Flamingo's
        text attends only to the image of the latest `<image>` marker before it, so padding
        images are never attended to.
        """
        max_images = max(len(request.images) for request in requests)
        pixels = [self.load_pixels(list(request.images)) for request in requests]
        channels, height, width = pixels[0].shape[1:]
        batch = torch.zeros(len(requests), max_images, 1, channels, height, width)
        for row, request_pixels in enumerate(pixels):
            batch[row, : len(request_pixels), 0] = request_pixels
        return batch.to(device=self.device, dtype=self.dtype)

    def prefetch(self, requests: list[Request]) -> None:
        """Start loading and preprocessing the images of upcoming requests in the background."""
        if self.fast:
            images = [image for request in requests for image in request.images]
            self._prefetcher.submit([image for image in images if image.cache_key not in self.media_cache])

    def plan_images(self, batches: list[list[Request]], workers: int) -> None:
        """Load the images of `batches`, in the order they will run, in `workers` processes."""
        if not self.fast:
            return
        images = [
            image
            for batch in batches
            for request in batch
            for image in request.images
            if image.cache_key not in self.media_cache
        ]
        largest = max((sum(len(request.images) for request in batch) for batch in batches), default=0)
        self._prefetcher.plan(images, workers, max_ahead=max(PLAN_AHEAD_IMAGES, largest))

    def media_for(self, requests: list[Request]) -> torch.Tensor:
        """Return media features (B, T_img, latents, dim), encoding each distinct image once.

        Features come from a bounded cache keyed by image key, so images repeated within a batch
        (beams, shared demos) or across batches are not encoded again. The perceiver treats
        every image independently, so a cached feature equals a freshly computed one.
        """
        if not self.fast:
            with self.autocast():
                return self.encode_images(self.vision_batch(requests))
        missing = {}
        for request in requests:
            for image in request.images:
                if image.cache_key not in self.media_cache and image.cache_key not in missing:
                    missing[image.cache_key] = image
        if missing:
            pixels = self._prefetcher.pixels(list(missing.values()))
            vision_x = pixels.to(device=self.device, dtype=self.dtype)[:, None, None]
            with self.autocast():
                features = self.encode_images(vision_x)[:, 0]
            for key, feature in zip(missing, features):
                self.media_cache.put(key, feature)

        max_images = max(len(request.images) for request in requests)
        rows = []
        for request in requests:
            features = [self.media_cache.get(image.cache_key) for image in request.images]
            stacked = torch.stack(features)
            if len(features) < max_images:
                # Padding media are never attended to: text attends only to its latest image.
                padding = stacked.new_zeros((max_images - len(features), *stacked.shape[1:]))
                stacked = torch.cat([stacked, padding])
            rows.append(stacked)
        return torch.stack(rows)

    def encode_images(self, vision_x: torch.Tensor) -> torch.Tensor:
        """Run the vision tower and perceiver; return media features (B, T_img, latents, dim)."""
        self.images_encoded += vision_x.shape[0] * vision_x.shape[1]
        batch, num_images = vision_x.shape[:2]
        flat = vision_x.flatten(0, 2)
        tokens = self.model.vision_encoder(flat)[1]
        tokens = tokens.view(batch, num_images, 1, *tokens.shape[1:])
        return self.model.perceiver(tokens)

    @contextmanager
    def conditioned_on(self, media: torch.Tensor, cached_media_locations: bool):
        """Condition every cross-attention layer on `media`; always clear it afterwards.

        A generate() that raises would otherwise leave the model in its "media cached" state,
        and the next forward would fail an assertion.
        """
        lang_encoder = self.model.lang_encoder
        lang_encoder._use_cached_vision_x = cached_media_locations
        for layer in lang_encoder._get_decoder_layers():
            layer.condition_vis_x(media)
        try:
            yield
        finally:
            lang_encoder.clear_conditioned_layers()
            lang_encoder._use_cached_vision_x = False

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
        input_ids, attention_mask = self.encode_text([request.prompt for request in requests])
        if self.fast:
            media = self.media_for(requests).repeat_interleave(num_beams, dim=0)
        else:
            # OpenFlamingo's path: the images of every beam go through the vision tower.
            vision_x = self.vision_batch(requests).repeat_interleave(num_beams, dim=0)
            with self.autocast():
                media = self.encode_images(vision_x)

        prefill = {}
        last_is_image = bool((input_ids[:, -1] == self.model.media_token_id).any())
        if self.fast and num_beams > 1 and input_ids.shape[1] > 1 and not last_is_image:
            prefill = self._prefill_once(input_ids, attention_mask, media[::num_beams], num_beams)
        with self.conditioned_on(media, cached_media_locations=True), self.autocast():
            if prefill:
                # The prompt's media locations, one row per beam, for the tokens still to come.
                locations = (input_ids == self.model.media_token_id).repeat_interleave(num_beams, dim=0)
                for layer in self.model.lang_encoder._get_decoder_layers():
                    layer.condition_media_locations(locations)
            output = self.model.lang_encoder.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids_from_mask(attention_mask),
                **prefill,
                eos_token_id=self.end_of_chunk_id,
                pad_token_id=self.tokenizer.pad_token_id,
                # A generated <image> token would make open_flamingo re-condition the media
                # locations of every row in the batch, coupling one request's output to
                # another's; no image can follow it anyway.
                suppress_tokens=[self.model.media_token_id],
                num_beams=num_beams,
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens,
                length_penalty=length_penalty,
                do_sample=False,
                early_stopping=False,
                return_dict_in_generate=True,
                output_scores=True,
            )

        new_tokens = output.sequences[:, input_ids.shape[1] :]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        logprobs = self._sequence_logprobs(output, new_tokens, num_beams)
        return [Generation(text, logprob) for text, logprob in zip(texts, logprobs)]

    def _prefill_once(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, media: torch.Tensor, num_beams: int
    ) -> dict[str, Any]:
        """Run all prompt tokens but the last once per request and copy the cache to each beam.

        transformers' beam search repeats the prompt per beam before its first forward, so
        every beam would recompute the same keys and values. Returns generate() arguments.
        """
        with self.conditioned_on(media, cached_media_locations=False), self.autocast():
            prefix = self.model.lang_encoder(
                input_ids=input_ids[:, :-1],
                attention_mask=attention_mask[:, :-1],
                position_ids=position_ids_from_mask(attention_mask)[:, :-1],
                use_cache=True,
            )
        cache = prefix.past_key_values
        cache.batch_repeat_interleave(num_beams)
        return {"past_key_values": cache}

    def _sequence_logprobs(self, output, new_tokens: torch.Tensor, num_beams: int) -> list[float]:
        """Return the decoding's log-probability of each returned sequence."""
        if num_beams > 1:
            # With length_penalty 0 this is the sum of the tokens' log-probabilities.
            return output.sequences_scores.float().tolist()
        step_logprobs = torch.stack(
            [torch.log_softmax(scores.float(), dim=-1) for scores in output.scores], dim=1
        )
        chosen = step_logprobs.gather(-1, new_tokens[:, : step_logprobs.shape[1], None])[..., 0]
        finished = torch.zeros(new_tokens.shape[0], dtype=torch.bool, device=new_tokens.device)
        total = torch.zeros(new_tokens.shape[0], device=new_tokens.device)
        for step in range(chosen.shape[1]):
            total += torch.where(finished, torch.zeros_like(total), chosen[:, step])
            finished |= new_tokens[:, step] == self.end_of_chunk_id
        return total.tolist()

    # Ranking --------------------------------------------------------------------------------

    @torch.inference_mode()
    def logits(self, requests: list[Request]) -> tuple[torch.Tensor, torch.Tensor]:
        """Run one full forward; return next-token logits (B, T, V) and the attention mask."""
        input_ids, attention_mask = self.encode_text([request.prompt for request in requests])
        media = self.media_for(requests)
        with self.conditioned_on(media, cached_media_locations=False), self.autocast():
            output = self.model.lang_encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids_from_mask(attention_mask),
                use_cache=False,
            )
        return output.logits.float(), attention_mask

    @torch.inference_mode()
    def rank(self, requests: list[Request], class_names: list[str]) -> list[list[float]]:
        """Score class names by a full-sequence forward of prompt + class name, one per class.

        The class name's tokens are appended to the prompt's tokens (tokenized separately, as
        OpenFlamingo does) and scored by their mean log-probability.
        """
        if self.fast:
            return score_classes_with_shared_prefix(self, requests, class_names)
        prompt_ids = [self.tokenizer(request.prompt)["input_ids"] for request in requests]
        scores = [[0.0] * len(class_names) for _ in requests]
        for class_index, class_name in enumerate(class_names):
            class_ids = self.tokenizer(class_name, add_special_tokens=False)["input_ids"]
            sequences = [ids + class_ids for ids in prompt_ids]
            class_logprobs = self._continuation_logprobs(requests, sequences, len(class_ids))
            for row, value in enumerate(class_logprobs):
                scores[row][class_index] = value
        return scores

    def _continuation_logprobs(
        self, requests: list[Request], sequences: list[list[int]], continuation_length: int
    ) -> list[float]:
        """Mean log-probability of the last `continuation_length` tokens of each sequence."""
        length = max(len(sequence) for sequence in sequences)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.bool)
        for row, sequence in enumerate(sequences):
            input_ids[row, length - len(sequence) :] = torch.tensor(sequence)
            attention_mask[row, length - len(sequence) :] = True
        input_ids = input_ids.to(self.device)
        attention_mask = attention_mask.to(self.device)

        media = self.media_for(requests)
        with self.conditioned_on(media, cached_media_locations=False), self.autocast():
            logits = self.model.lang_encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids_from_mask(attention_mask),
                use_cache=False,
            ).logits.float()
        logprobs = torch.log_softmax(logits[:, -continuation_length - 1 : -1], dim=-1)
        targets = input_ids[:, -continuation_length:]
        token_logprobs = logprobs.gather(-1, targets[..., None])[..., 0]
        return token_logprobs.mean(dim=-1).tolist()
