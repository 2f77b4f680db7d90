"""Code shipped with a model runs only with trust_remote_code; known model types use
transformers' own classes even when their config maps to shipped code."""

from __future__ import annotations

import json
import shutil

import pytest

from builders import VISION, sample_requests
from flamingo_eval.errors import InputError
from flamingo_eval.models import load_model

# Importing this file would create the marker; the tests check that it never exists.
SHIPPED_CODE = """
from pathlib import Path
Path(__file__).with_name("EXECUTED").write_text("remote code ran")
"""


def ship_code(folder, config_changes: dict) -> None:
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config.update(config_changes)
    config_path.write_text(json.dumps(config))
    for module in ("configuration_custom.py", "modeling_custom.py"):
        (folder / module).write_text(SHIPPED_CODE)


def test_unknown_architecture_refused(saved_mpt, tmp_path, hub_offline):
    lm_dir = tmp_path / "mosaic"
    shutil.copytree(saved_mpt.lm_dir, lm_dir)
    ship_code(lm_dir, {
        "model_type": "mosaic_gpt",
        "architectures": ["MosaicGPT"],
        "auto_map": {
            "AutoConfig": "configuration_custom.MosaicGPTConfig",
            "AutoModelForCausalLM": "modeling_custom.MosaicGPT",
        },
    })
    with pytest.raises(InputError) as error:
        load_model(
            "openflamingo-3b",
            checkpoint=str(saved_mpt.checkpoint),
            lm_path=str(lm_dir),
            vision_encoder=f"{VISION}:{saved_mpt.vision_file}",
        )
    message = str(error.value)
    assert "--trust-remote-code" in message
    assert "'mosaic_gpt'" in message
    assert "modeling_custom.py" in message
    assert not (lm_dir / "EXECUTED").exists()


def test_known_type_uses_transformers_class(saved_mpt, tmp_path, model_images, hub_offline):
    """MPT-7B's config maps to shipped code, but transformers implements model type "mpt"."""
    lm_dir = tmp_path / "mpt-with-code"
    shutil.copytree(saved_mpt.lm_dir, lm_dir)
    ship_code(lm_dir, {
        "auto_map": {
            "AutoConfig": "configuration_custom.MPTConfig",
            "AutoModelForCausalLM": "modeling_custom.MPTForCausalLM",
        },
    })
    loaded = load_model(
        "openflamingo-9b",
        checkpoint=str(saved_mpt.checkpoint),
        lm_path=str(lm_dir),
        vision_encoder=f"{VISION}:{saved_mpt.vision_file}",
    )
    assert not (lm_dir / "EXECUTED").exists()
    assert loaded.identity()["language_model"]["class"] == "MptForCausalLM"
    assert loaded.identity()["language_model"]["remote_code"] is False
    requests = sample_requests(model_images)[:2]
    assert loaded.rank(requests, ["yes"]) == saved_mpt.adapter.rank(requests, ["yes"])


def test_tokenizer_code_refused(saved_mpt, tmp_path, hub_offline):
    tokenizer_dir = tmp_path / "tokenizer"
    shutil.copytree(saved_mpt.lm_dir, tokenizer_dir)
    config_path = tokenizer_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoTokenizer": ["modeling_custom.CustomTokenizer", None]}
    config_path.write_text(json.dumps(config))
    (tokenizer_dir / "modeling_custom.py").write_text(SHIPPED_CODE)
    with pytest.raises(InputError, match="--trust-remote-code"):
        load_model(
            "openflamingo-9b",
            checkpoint=str(saved_mpt.checkpoint),
            lm_path=str(saved_mpt.lm_dir),
            tokenizer_path=str(tokenizer_dir),
            vision_encoder=f"{VISION}:{saved_mpt.vision_file}",
        )
    assert not (tokenizer_dir / "EXECUTED").exists()
