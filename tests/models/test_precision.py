"""Precision modes and devices: token ids and masks keep integer or bool dtypes in every mode,
and the run metadata records the precision and the device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from flamingo_eval.errors import InputError
from flamingo_eval.models import load_model
from flamingo_eval.models.base import Request
from flamingo_eval.models.factory import build_flamingo
from flamingo_eval.models.flamingo_adapter import FlamingoModel
from flamingo_eval.models.precision import PRECISIONS

CASES = Path(__file__).resolve().parents[3] / "shared" / "cases" / "metric_cases.json"
BASE_VOCAB = 50277  # GPT-NeoX's tokenizer size, so the Flamingo tokens get OpenFlamingo-3B's ids


def reduced_precision_ids() -> list[int]:
    try:
        with open(CASES) as handle:
            return json.load(handle)["token_ids_under_reduced_precision"]["ids"]
    except FileNotFoundError:
        return [257, 50277, 50278, 50279]


@pytest.fixture(scope="module")
def large_vocab_flamingo():
    """A tiny Flamingo whose tokenizer has 50277 words, then <|endofchunk|>, <image>, <PAD>."""
    vocab = {f"w{index}": index for index in range(BASE_VOCAB)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="w1")
    torch.manual_seed(0)
    lang_model = LlamaForCausalLM(LlamaConfig(
        vocab_size=BASE_VOCAB + 3, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
    ))
    model, image_processor, tokenizer = build_flamingo(
        vision_encoder="tiny-vit", vision_pretrained=None, lang_model=lang_model,
        tokenizer=tokenizer, cross_attn_every_n_layers=1,
    )
    return model, image_processor, tokenizer


def test_flamingo_token_ids(large_vocab_flamingo):
    _, _, tokenizer = large_vocab_flamingo
    ids = tokenizer.convert_tokens_to_ids(["<|endofchunk|>", "<image>", "<PAD>"])
    assert ids == reduced_precision_ids()[1:]


def test_bf16_keeps_token_ids(large_vocab_flamingo, model_images):
    model, image_processor, tokenizer = large_vocab_flamingo
    adapter = FlamingoModel(model, image_processor, tokenizer, name="bf16", dtype=torch.bfloat16)
    seen = []

    def record(module, args, kwargs):
        seen.append((kwargs["input_ids"].clone(), kwargs["attention_mask"].clone()))

    handle = adapter.model.lang_encoder.register_forward_pre_hook(record, with_kwargs=True)
    try:
        prompt = "<image>w257 w50276 w300<|endofchunk|>\n<image>w257 w9"
        requests = [Request(prompt, (model_images[0], model_images[1])), Request("<image>w5", (model_images[2],))]
        adapter.generate(requests, num_beams=1, max_new_tokens=2)
        adapter.rank(requests, ["w50276", "w257 w3"])
    finally:
        handle.remove()

    assert adapter.model.lang_encoder.get_input_embeddings().weight.dtype == torch.bfloat16
    all_ids = torch.cat([ids.flatten() for ids, _ in seen])
    for ids, mask in seen:
        assert ids.dtype == torch.long
        assert mask.dtype in (torch.bool, torch.long)
    for token_id in (257, 50276, 50277, 50278, 50279):
        assert (all_ids == token_id).any(), token_id
    expected = tokenizer(prompt)["input_ids"]
    first_ids, first_mask = seen[0]
    assert first_ids[0, first_mask[0].bool()].tolist() == expected
    # What bfloat16 would have made of them: the reason ids must never be cast.
    assert torch.tensor([257, 50277]).to(torch.bfloat16).long().tolist() == [256, 50176]


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_precision_modes_run(precision, model_images):
    model = load_model("tiny", precision=precision)
    request = Request("<image>Question:What is it? Short answer:", (model_images[0],))
    generation = model.generate([request], num_beams=1, max_new_tokens=2)[0]
    assert generation.logprob == generation.logprob  # not NaN
    identity = model.identity()
    assert identity["precision"] == precision
    assert identity["device"] == "cpu"
    expected_dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "amp_bf16": "float32"}
    assert identity["dtype"] == expected_dtype[precision]


def test_amp_bf16_autocasts(model_images):
    model = load_model("tiny", precision="amp_bf16")
    dtypes = []
    handle = model.model.lang_encoder.register_forward_hook(lambda module, args, output: dtypes.append(output.logits.dtype))
    try:
        model.rank([Request("<image>Question:Hi? Short answer:", (model_images[0],))], ["yes"])
    finally:
        handle.remove()
    assert dtypes == [torch.bfloat16]
    assert next(model.model.parameters()).dtype == torch.float32


def test_run_metadata_records_precision(okvqa_dir, tmp_path):
    from flamingo_eval.api import evaluate_model

    evaluate_model("tiny", tasks=["okvqa"], shots=[0], num_samples=2, data_dir=okvqa_dir,
                   output_dir=tmp_path / "run", precision="bf16")
    metadata = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert metadata["model"]["precision"] == "bf16"
    assert metadata["model"]["dtype"] == "bfloat16"
    assert metadata["model"]["device"] == "cpu"


def test_bad_precision_and_device():
    with pytest.raises(InputError, match="unknown precision 'fp8'"):
        load_model("tiny", precision="fp8")
    with pytest.raises(InputError, match="invalid device 'gpu0'"):
        load_model("tiny", device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            load_model("tiny", device="cuda")
