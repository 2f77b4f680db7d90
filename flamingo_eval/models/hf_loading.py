"""Loading Hugging Face tokenizers and causal LMs from a local folder or the hub cache.

A source is a local folder or a hub repo id. Hub files go through `huggingface_hub`, which
downloads on first use and reads only its cache when `HF_HUB_OFFLINE=1` is set. Code shipped
with a model (a config.json whose `auto_map` names Python files) runs only when the caller
passes `trust_remote_code=True`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from flamingo_eval.errors import InputError

logger = logging.getLogger(__name__)

# Decoder block lists of LM classes that only exist as remote code (open_flamingo's names).
REMOTE_DECODER_LAYERS_ATTR = {"MosaicGPT": "transformer.blocks"}


def is_local(source: str) -> bool:
    return Path(source).expanduser().exists()


def resolve_file(source: str, filename: str, *, context: str) -> Path:
    """Return a local path for `filename` in `source` (a folder or hub repo id), downloading it
    into the hub cache when needed; `source` may also be the file itself."""
    local = Path(source).expanduser()
    if local.is_file():
        return local
    if local.is_dir():
        path = local / filename
        if not path.is_file():
            raise InputError(f"{context}: {path} not found")
        return path
    try:
        return Path(hf_hub_download(repo_id=source, filename=filename))
    except LocalEntryNotFoundError:
        raise InputError(
            f"{context}: {filename} of {source!r} is not in the Hugging Face cache and cannot be "
            "downloaded (offline, or HF_HUB_OFFLINE=1); run once with network access or pass a "
            "local path"
        ) from None
    except EntryNotFoundError:
        raise InputError(f"{context}: the hub repo {source!r} has no file {filename}") from None
    except (HfHubHTTPError, ValueError) as error:
        raise InputError(
            f"{context}: {source!r} is neither a local path nor a readable hub repo ({error})"
        ) from None


def read_config(source: str, *, context: str) -> dict[str, Any]:
    """Read a model's config.json as a plain dict, without running any of the model's code."""
    path = resolve_file(source, "config.json", context=context)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{context}: {path} is not valid JSON ({error})") from None


def needs_remote_code(config: dict[str, Any]) -> bool:
    """Tell whether a config can only be built by the model's own code.

    A config with an `auto_map` whose `model_type` transformers implements (MPT-7B's "mpt") is
    built with transformers' own class; only unknown model types (MPT-1B's "mosaic_gpt") need
    the shipped code.
    """
    return "auto_map" in config and config.get("model_type") not in CONFIG_MAPPING


def check_remote_code(config: dict[str, Any], source: str, trust_remote_code: bool, context: str) -> bool:
    """Return whether loading `source` runs its own code; raise InputError when that code is
    needed but was not allowed."""
    if not needs_remote_code(config):
        return False
    if not trust_remote_code:
        files = sorted(set(str(value).split(".")[0] + ".py" for value in config["auto_map"].values()))
        raise InputError(
            f"{context} {source!r} needs its own modelling code ({', '.join(files)}): transformers "
            f"does not implement its model type {config.get('model_type')!r}. Read that code, "
            "then pass --trust-remote-code (trust_remote_code=True) to run it"
        )
    logger.warning("running the modelling code shipped with %s (trust_remote_code=True)", source)
    return True


def load_tokenizer(source: str, trust_remote_code: bool) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a folder or hub repo; shipped tokenizer code needs the flag."""
    tokenizer_config = _read_optional_json(source, "tokenizer_config.json")
    if tokenizer_config is not None and "auto_map" in tokenizer_config and not trust_remote_code:
        raise InputError(
            f"tokenizer {source!r} needs its own code (auto_map in tokenizer_config.json); "
            "read it, then pass --trust-remote-code to run it"
        )
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise InputError(f"tokenizer {source!r} could not be loaded: {error}") from None


def _read_optional_json(source: str, filename: str) -> dict[str, Any] | None:
    try:
        path = resolve_file(source, filename, context="tokenizer")
    except InputError:
        return None
    return json.loads(path.read_text())


def load_causal_lm(
    source: str, *, trust_remote_code: bool, dtype: torch.dtype
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a causal LM in `dtype`; return it and a description for run metadata.

    Raises InputError when any of the LM's weights are missing from the files or have the wrong
    shape, instead of keeping transformers' random initialisation of them.
    """
    config = read_config(source, context="language model")
    uses_remote_code = check_remote_code(config, source, trust_remote_code, "language model")
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            source,
            trust_remote_code=uses_remote_code,
            dtype=dtype,
            output_loading_info=True,
        )
    except (OSError, ValueError) as error:
        raise InputError(f"language model {source!r} could not be loaded: {error}") from None

    missing = sorted(info.get("missing_keys", []))
    mismatched = info.get("mismatched_keys", [])
    if missing or mismatched:
        raise InputError(
            f"language model {source!r}: {type(model).__name__} does not match the weight files: "
            f"missing {_preview(missing)}, wrong shape {_preview([str(m) for m in mismatched])}"
        )
    unexpected = sorted(info.get("unexpected_keys", []))
    if unexpected:
        logger.warning("language model %s: ignored weights %s", source, _preview(unexpected))
    ensure_input_embeddings_accessors(model)
    description = {
        "source": source,
        "class": type(model).__name__,
        "model_type": config.get("model_type"),
        "remote_code": uses_remote_code,
        "revision": _snapshot_revision(source),
    }
    return model, description


def decoder_layers_attr_for(model: torch.nn.Module) -> str | None:
    """Return the decoder block path of remote-code LM classes; None lets the factory decide."""
    return REMOTE_DECODER_LAYERS_ATTR.get(type(model).__name__)


def ensure_input_embeddings_accessors(model: torch.nn.Module) -> None:
    """Give models without `get_input_embeddings` (MosaicGPT's remote code) one over `transformer.wte`.

    open_flamingo's own factory applies the same patch to MPT-1B.
    """
    try:
        if model.get_input_embeddings() is not None:
            return
    except NotImplementedError:
        pass
    transformer = getattr(model, "transformer", None)
    if transformer is None or not hasattr(transformer, "wte"):
        raise InputError(
            f"{type(model).__name__} has no input embeddings accessor (get_input_embeddings)"
        )
    base_class = type(model)

    def get_input_embeddings(self):
        return self.transformer.wte

    def set_input_embeddings(self, embeddings):
        self.transformer.wte = embeddings

    model.__class__ = type(
        base_class.__name__,
        (base_class,),
        {"get_input_embeddings": get_input_embeddings, "set_input_embeddings": set_input_embeddings},
    )


def _snapshot_revision(source: str) -> str | None:
    """Return the hub commit a cached source resolves to, or None for local folders."""
    if is_local(source):
        return None
    path = resolve_file(source, "config.json", context="language model")
    # Cached hub files live in .../snapshots/<commit hash>/<filename>.
    return path.parent.name if path.parent.parent.name == "snapshots" else None


def _preview(names: list[str], limit: int = 20) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
