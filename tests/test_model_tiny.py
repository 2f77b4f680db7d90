"""The tiny preset and the Flamingo adapter: determinism, batch invariance, image conditioning."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flamingo_eval.data.example import ImageRef
from flamingo_eval.models.base import Request
from flamingo_eval.models.tiny import build_tiny

DEMO = "<image>Question:What color is the square? Short answer:red<|endofchunk|>\n"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[ImageRef]:
    folder = tmp_path_factory.mktemp("images")
    generator = np.random.default_rng(0)
    refs = []
    for index in range(10):
        pixels = generator.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        path = folder / f"{index}.png"
        Image.fromarray(pixels).save(path)
        refs.append(ImageRef(key=str(index), path=path))
    return refs


def mixed_requests(images: list[ImageRef]) -> list[Request]:
    """Eight requests of different lengths and image counts, so batches need padding."""
    requests = []
    for index in range(8):
        shots = index % 3
        question = "What color" + " is it" * index + "?"
        prompt = DEMO * shots + f"<image>Question:{question} Short answer:"
        requests.append(Request(prompt, tuple(images[:shots]) + (images[index],)))
    return requests


def test_tiny_weights_deterministic():
    first, _, _ = build_tiny()
    second, _, _ = build_tiny()
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


def test_tiny_gates_nonzero(tiny_model):
    layers = [layer for layer in tiny_model.model.lang_encoder.gated_cross_attn_layers if layer is not None]
    assert layers
    for layer in layers:
        assert layer.attn_gate.item() != 0.0
        assert layer.ff_gate.item() != 0.0


def test_tokenizer_special_tokens(tiny_model):
    tokenizer = tiny_model.tokenizer
    for token in ("<image>", "<|endofchunk|>", "<PAD>"):
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, token
    assert tokenizer.pad_token == "<PAD>"


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_batch_invariant(tiny_model, images, num_beams):
    requests = mixed_requests(images)
    batched = tiny_model.generate(requests, num_beams=num_beams, max_new_tokens=5)
    for request, together in zip(requests, batched):
        alone = tiny_model.generate([request], num_beams=num_beams, max_new_tokens=5)[0]
        assert together.text == alone.text
        assert together.logprob == pytest.approx(alone.logprob, abs=1e-5)


def test_replacing_image_changes_logits(tiny_model, images):
    prompt = DEMO + "<image>Question:What color is it? Short answer:"
    original, _ = tiny_model.logits([Request(prompt, (images[0], images[1]))])
    replaced, _ = tiny_model.logits([Request(prompt, (images[0], images[2]))])
    assert not torch.allclose(original, replaced, atol=1e-4)
    # The query image only affects tokens after its own <image> marker.
    image_position = tiny_model.tokenizer(prompt)["input_ids"].index(
        tiny_model.tokenizer.convert_tokens_to_ids("<image>"), 1
    )
    assert torch.allclose(original[0, :image_position], replaced[0, :image_position], atol=1e-6)


def test_ranking_batch_invariant(tiny_model, images):
    requests = mixed_requests(images)[:4]
    classes = ["red", "blue square", "no"]
    batched = tiny_model.rank(requests, classes)
    for request, together in zip(requests, batched):
        alone = tiny_model.rank([request], classes)[0]
        assert together == pytest.approx(alone, abs=1e-5)


def test_forward_without_attention_mask(tiny_model, images):
    """transformers >= 5.18 may call the LM without a mask; the mixin must accept that."""
    model = tiny_model.model
    input_ids = tiny_model.tokenizer(["<image>Question:Hi? Short answer:"], return_tensors="pt")["input_ids"]
    media = tiny_model.encode_images(tiny_model.vision_batch([Request("", (images[0],))]))
    with tiny_model.conditioned_on(media, cached_media_locations=False):
        without_mask = model.lang_encoder(input_ids=input_ids).logits
    with tiny_model.conditioned_on(media, cached_media_locations=False):
        with_mask = model.lang_encoder(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids, dtype=torch.bool)
        ).logits
    assert torch.allclose(without_mask, with_mask, atol=1e-6)


def test_failed_generate_clears_media(tiny_model, images):
    request = Request("<image>Question:Hi? Short answer:", (images[0],))
    with pytest.raises(ValueError):
        tiny_model.generate([request], num_beams=1, max_new_tokens=-5)
    assert not tiny_model.model.lang_encoder._use_cached_vision_x
    assert not tiny_model.model.lang_encoder.is_conditioned()
    assert tiny_model.generate([request], num_beams=1, max_new_tokens=2)


def test_context_fits_32_shots(tiny_model, images):
    prompt = DEMO * 32 + "<image>Question:What color is the circle? Short answer:"
    length = len(tiny_model.tokenizer(prompt)["input_ids"])
    assert length < tiny_model.model.lang_encoder.config.max_position_embeddings
    request = Request(prompt, tuple(images[i % 10] for i in range(33)))
    assert len(tiny_model.generate([request], num_beams=1, max_new_tokens=2)) == 1
