"""OpenFlamingo presets loaded from files: tiny models of each LM family saved in the real layouts
and loaded through the presets' code path give the in-memory model's predictions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from builders import VISION, predictions, sample_requests, save_tiny_flamingo
from flamingo_eval.errors import InputError
from flamingo_eval.models import load_model
from flamingo_eval.models.checkpoint import canonical_key
from flamingo_eval.models.options import ModelOptions
from flamingo_eval.models.presets import OPENFLAMINGO_PRESETS, FlamingoPreset, load_openflamingo

REPO_ROOT = Path(__file__).resolve().parents[2]


def overrides(saved) -> dict:
    return {
        "checkpoint": str(saved.checkpoint),
        "lm_path": str(saved.lm_dir),
        "vision_encoder": f"{VISION}:{saved.vision_file}",
    }


def test_preset_table():
    expected = {
        "openflamingo-3b": ("anas-awadalla/mpt-1b-redpajama-200b", 1, "openflamingo/OpenFlamingo-3B-vitl-mpt1b"),
        "openflamingo-3b-instruct": ("anas-awadalla/mpt-1b-redpajama-200b-dolly", 1, "openflamingo/OpenFlamingo-3B-vitl-mpt1b-langinstruct"),
        "openflamingo-4b": ("togethercomputer/RedPajama-INCITE-Base-3B-v1", 2, "openflamingo/OpenFlamingo-4B-vitl-rpj3b"),
        "openflamingo-4b-instruct": ("togethercomputer/RedPajama-INCITE-Instruct-3B-v1", 2, "openflamingo/OpenFlamingo-4B-vitl-rpj3b-langinstruct"),
        "openflamingo-9b": ("anas-awadalla/mpt-7b", 4, "openflamingo/OpenFlamingo-9B-vitl-mpt7b"),
    }
    assert set(OPENFLAMINGO_PRESETS) == set(expected)
    for name, (lm, interval, repo) in expected.items():
        preset = OPENFLAMINGO_PRESETS[name]
        assert (preset.language_model, preset.cross_attn_every_n_layers, preset.checkpoint_repo) == (lm, interval, repo)
        assert preset.checkpoint_file == "checkpoint.pt"
        # open_clip 2.x built the "openai" ViT-L-14 with QuickGELU, the activation its weights need.
        assert (preset.vision_encoder, preset.vision_pretrained) == ("ViT-L-14-quickgelu", "openai")


@pytest.mark.parametrize(
    "family, preset_name, interval",
    [("gpt_neox", "openflamingo-4b", 2), ("mpt", "openflamingo-9b", 4)],
)
def test_preset_with_local_paths(family, preset_name, interval, tmp_path, model_images, hub_offline):
    saved = save_tiny_flamingo(family, tmp_path, interval)
    loaded = load_model(preset_name, **overrides(saved))
    requests = sample_requests(model_images)
    assert predictions(loaded, requests) == predictions(saved.adapter, requests)
    identity = loaded.identity()
    assert identity["preset"] == preset_name
    assert identity["checkpoint"]["path"] == str(saved.checkpoint)
    assert len(identity["checkpoint"]["sha256"]) == 64
    assert identity["language_model"]["remote_code"] is False


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_custom_preset_families(family, tmp_path, model_images, hub_offline):
    saved = save_tiny_flamingo(family, tmp_path, cross_attn_every_n_layers=1)
    preset = FlamingoPreset(
        name=f"tiny-{family}",
        vision_encoder=VISION,
        vision_pretrained=str(saved.vision_file),
        language_model=str(saved.lm_dir),
        tokenizer=str(saved.lm_dir),
        cross_attn_every_n_layers=1,
        checkpoint_repo=None,
    )
    loaded = load_openflamingo(preset, ModelOptions(checkpoint=str(saved.checkpoint)))
    requests = sample_requests(model_images)
    assert predictions(loaded, requests) == predictions(saved.adapter, requests)


def rewrite_checkpoint(saved, path: Path, change) -> Path:
    state = torch.load(saved.checkpoint, weights_only=True)["model_state_dict"]
    change(state)
    torch.save(state, path)
    return path


def test_missing_trainable_tensor_named(saved_mpt, tmp_path):
    perceiver_key = "module.perceiver.latents"
    gate_key = "module.lang_encoder.transformer.blocks.3.gated_cross_attn_layer.attn_gate"

    def drop(state):
        del state[perceiver_key]
        del state[gate_key]

    path = rewrite_checkpoint(saved_mpt, tmp_path / "partial.pt", drop)
    with pytest.raises(InputError) as error:
        load_model("openflamingo-9b", **{**overrides(saved_mpt), "checkpoint": str(path)})
    message = str(error.value)
    assert "missing trained parameters (2)" in message
    assert "perceiver.latents" in message
    assert "lang_encoder.transformer.blocks.3.gated_cross_attn_layer.attn_gate" in message


def test_missing_embeddings_named(saved_mpt, tmp_path):
    def drop(state):
        # MPT ties its output layer to the input embeddings, so the tensor is saved under both names.
        del state["module.lang_encoder.transformer.wte.weight"]
        del state["module.lang_encoder.lm_head.weight"]

    path = rewrite_checkpoint(saved_mpt, tmp_path / "no_embeddings.pt", drop)
    with pytest.raises(InputError, match=r"lang_encoder\.transformer\.wte\.weight"):
        load_model("openflamingo-9b", **{**overrides(saved_mpt), "checkpoint": str(path)})


def test_unexpected_key_named(saved_mpt, tmp_path):
    def add(state):
        state["module.lang_encoder.transformer.blocks.1.gated_cross_attn_layer.attn_gate"] = torch.zeros(1)

    path = rewrite_checkpoint(saved_mpt, tmp_path / "extra.pt", add)
    with pytest.raises(InputError) as error:
        load_model("openflamingo-9b", **{**overrides(saved_mpt), "checkpoint": str(path)})
    assert "unexpected keys (1): lang_encoder.transformer.blocks.1.gated_cross_attn_layer.attn_gate" in str(error.value)


def test_wrong_interval_rejected(saved_mpt):
    """A checkpoint trained with cross-attention every 4 layers does not fit an interval of 2."""
    with pytest.raises(InputError, match="missing trained parameters"):
        load_model("openflamingo-4b", **overrides(saved_mpt))


def test_wrong_shape_named(saved_mpt, tmp_path):
    def resize(state):
        state["module.perceiver.latents"] = torch.zeros(3, 3)

    path = rewrite_checkpoint(saved_mpt, tmp_path / "shape.pt", resize)
    with pytest.raises(InputError, match=r"wrong shapes \(1\): perceiver\.latents \(checkpoint \(3, 3\)"):
        load_model("openflamingo-9b", **{**overrides(saved_mpt), "checkpoint": str(path)})


class NotATensor:
    pass


def test_pickled_object_refused(saved_mpt, tmp_path):
    path = tmp_path / "pickle.pt"
    torch.save({"perceiver.latents": NotATensor()}, path)
    with pytest.raises(InputError, match="weights_only=True"):
        load_model("openflamingo-9b", **{**overrides(saved_mpt), "checkpoint": str(path)})


def test_wrapper_prefixes_mapped(saved_mpt, tmp_path, model_images):
    def wrap(state):
        for key in list(state):
            inner = key.removeprefix("module.").replace("lang_encoder.", "lang_encoder._fsdp_wrapped_module.", 1)
            state[f"_orig_mod.{inner}"] = state.pop(key)

    path = rewrite_checkpoint(saved_mpt, tmp_path / "wrapped.pt", wrap)
    loaded = load_model("openflamingo-9b", **{**overrides(saved_mpt), "checkpoint": str(path)})
    requests = sample_requests(model_images)[:1]
    assert loaded.rank(requests, ["yes", "no"]) == saved_mpt.adapter.rank(requests, ["yes", "no"])


@pytest.mark.parametrize(
    "key, expected",
    [
        ("module.perceiver.latents", "perceiver.latents"),
        ("_orig_mod.module.perceiver.latents", "perceiver.latents"),
        (
            "lang_encoder._fsdp_wrapped_module.model.layers.0._checkpoint_wrapped_module.gated_cross_attn_layer.attn_gate",
            "lang_encoder.model.layers.0.gated_cross_attn_layer.attn_gate",
        ),
        ("perceiver.module.x", "perceiver.module.x"),
    ],
)
def test_canonical_key(key, expected):
    assert canonical_key(key) == expected


def test_vision_encoder_value_checked(saved_mpt):
    with pytest.raises(InputError, match="NAME:PRETRAINED"):
        load_model("openflamingo-9b", **{**overrides(saved_mpt), "vision_encoder": "tiny-vit"})


def fill_hub_cache(cache: Path, repo: str, files: dict[str, Path]) -> None:
    """Lay files out as huggingface_hub's cache does: refs/main names a snapshot folder."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        (snapshot / name).write_bytes(source.read_bytes())


def test_hub_cache_offline(tmp_path, model_images):
    """openflamingo-4b resolves its LM, tokenizer and checkpoint from a filled cache, offline."""
    saved = save_tiny_flamingo("gpt_neox", tmp_path, cross_attn_every_n_layers=2)
    cache = tmp_path / "hub"
    preset = OPENFLAMINGO_PRESETS["openflamingo-4b"]
    fill_hub_cache(cache, preset.language_model, {p.name: p for p in saved.lm_dir.iterdir()})
    fill_hub_cache(cache, preset.checkpoint_repo, {"checkpoint.pt": saved.checkpoint})
    images = [str(image.path) for image in model_images]
    script = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from builders import predictions, sample_requests
from flamingo_eval.data.example import ImageRef
from flamingo_eval.models import load_model
model = load_model("openflamingo-4b", vision_encoder={f"{VISION}:{saved.vision_file}"!r})
refs = [ImageRef(key=str(i), path=p) for i, p in enumerate({images!r})]
print(json.dumps({{"predictions": predictions(model, sample_requests(refs)), "identity": model.identity()}}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout.strip().splitlines()[-1])
    expected = json.loads(json.dumps(predictions(saved.adapter, sample_requests(model_images))))
    assert output["predictions"] == expected
    assert output["identity"]["language_model"]["revision"] == "0123456789abcdef0123456789abcdef01234567"


def test_hub_cache_miss_offline(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HOME": str(tmp_path / "home")}
    script = (
        "from flamingo_eval.models import load_model\n"
        "from flamingo_eval.errors import InputError\n"
        "try:\n    load_model('openflamingo-4b')\n"
        "except InputError as error:\n    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not in the Hugging Face cache" in result.stdout
    assert "openflamingo/OpenFlamingo-4B-vitl-rpj3b" in result.stdout
