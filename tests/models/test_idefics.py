"""IDEFICS through IdeficsForVisionText2Text and IdeficsProcessor: prompt translation, loading a
saved tiny model, batch invariance, image conditioning."""

from __future__ import annotations

import pytest

from builders import predictions, sample_requests
from flamingo_eval.errors import InputError
from flamingo_eval.models import load_model
from flamingo_eval.models.base import Request
from flamingo_eval.models.idefics_adapter import IdeficsModel, prompt_items
from idefics_builders import save_tiny_idefics


@pytest.fixture(scope="module")
def saved_idefics(tmp_path_factory):
    folder = tmp_path_factory.mktemp("idefics")
    model, processor = save_tiny_idefics(folder)
    return folder, IdeficsModel(model, processor, name="memory-idefics")


def test_prompt_items_translation():
    prompt = "<image>Question:Why? Short answer:red<|endofchunk|>\n<image>Question:How? Short answer:"
    assert prompt_items(prompt, ["A", "B"]) == [
        "A", "Question:Why? Short answer:red\n", "B", "Question:How? Short answer:",
    ]
    text_demos = "Output:a cat<|endofchunk|>\n<image>Output:"
    assert prompt_items(text_demos, ["A"]) == ["Output:a cat\n", "A", "Output:"]


def test_processor_tokens(saved_idefics, model_images):
    _, memory = saved_idefics
    encoded = memory.encode_request(sample_requests(model_images)[1])
    tokens = memory.tokenizer.convert_ids_to_tokens(encoded["input_ids"].tolist())
    assert tokens[:4] == ["<s>", "<fake_token_around_image>", "<image>", "<fake_token_around_image>"]
    assert tokens.count("<image>") == 2
    assert "<|endofchunk|>" not in tokens
    # Each token attends to at most one image: the latest one before it.
    assert encoded["image_attention_mask"].sum(dim=1).max().item() == 1


def test_loaded_equals_memory(saved_idefics, model_images, hub_offline):
    folder, memory = saved_idefics
    loaded = load_model("idefics-9b", checkpoint=str(folder))
    requests = sample_requests(model_images)
    assert predictions(loaded, requests) == predictions(memory, requests)
    identity = loaded.identity()
    assert identity["model"] == str(folder)
    assert identity["prompt_format"] == "idefics-base"


@pytest.mark.parametrize("num_beams", [1, 2])
def test_generation_batch_invariant(saved_idefics, model_images, num_beams):
    _, memory = saved_idefics
    requests = sample_requests(model_images)
    together = memory.generate(requests, num_beams=num_beams, max_new_tokens=4)
    for request, batched in zip(requests, together):
        alone = memory.generate([request], num_beams=num_beams, max_new_tokens=4)[0]
        assert batched.text == alone.text
        assert batched.logprob == pytest.approx(alone.logprob, abs=1e-4)


def test_ranking_batch_invariant(saved_idefics, model_images):
    _, memory = saved_idefics
    requests = sample_requests(model_images)
    classes = ["yes", "no", "red square"]
    together = memory.rank(requests, classes)
    for request, batched in zip(requests, together):
        assert batched == pytest.approx(memory.rank([request], classes)[0], abs=1e-5)


def test_image_changes_scores(saved_idefics, model_images):
    _, memory = saved_idefics
    prompt = "<image>Question:What is it? Short answer:"
    first = memory.rank([Request(prompt, (model_images[0],))], ["yes", "no"])[0]
    second = memory.rank([Request(prompt, (model_images[1],))], ["yes", "no"])[0]
    assert first != pytest.approx(second, abs=1e-6)


def test_flamingo_overrides_rejected(saved_idefics):
    folder, _ = saved_idefics
    with pytest.raises(InputError, match="do not apply to IDEFICS"):
        load_model("idefics-9b", checkpoint=str(folder), lm_path=str(folder))
