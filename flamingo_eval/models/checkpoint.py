"""Loading OpenFlamingo `checkpoint.pt` files, which hold only the parameters training changed.

A released checkpoint contains the perceiver, the gated cross-attention layers and the LM's
embeddings; the vision tower and the LM's frozen weights come from their own pretrained files.
The loader maps wrapper prefixes away, then refuses the checkpoint (naming the keys) when any of
these trained parameters is absent, when it holds keys the model does not have, or when a shape
differs. A partial load would otherwise leave random weights in place without a word.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flamingo_eval.errors import InputError

logger = logging.getLogger(__name__)

# Leading prefixes added by DistributedDataParallel ("module.") and torch.compile ("_orig_mod.").
LEADING_PREFIXES = ("module.", "_orig_mod.")
# Path components inserted by FSDP and activation-checkpoint wrappers anywhere in a key.
WRAPPER_COMPONENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_forward_module.")
# Keys under which training scripts nest the model's state dict (OpenFlamingo's own train.py
# uses "model_state_dict").
NESTED_STATE_KEYS = ("model_state_dict", "state_dict", "model")


@dataclass(frozen=True)
class CheckpointReport:
    """Summary of a checkpoint load, for run metadata."""

    path: str
    sha256: str
    loaded_keys: int
    trainable_parameters: int


def canonical_key(key: str) -> str:
    """Remove DDP, torch.compile, FSDP and activation-checkpoint wrapper names from a key."""
    changed = True
    while changed:
        changed = False
        for prefix in LEADING_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                changed = True
    for component in WRAPPER_COMPONENTS:
        key = key.replace(component, "")
    return key


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint with `weights_only=True` and return its tensors under canonical keys."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"checkpoint {path} not found; check --checkpoint") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(
            f"checkpoint {path} could not be read as plain tensors (torch.load with "
            f"weights_only=True): {first_line}"
        ) from None
    state = _unnest(loaded, path)
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise InputError(f"checkpoint {path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        new_key = canonical_key(key)
        if new_key in mapped:
            raise InputError(f"checkpoint {path}: keys {key!r} and another both map to {new_key!r}")
        mapped[new_key] = value
    return mapped


def _unnest(loaded: Any, path: Path) -> dict[str, Any]:
    if not isinstance(loaded, dict):
        raise InputError(f"checkpoint {path} contains a {type(loaded).__name__}, not a state dict")
    for key in NESTED_STATE_KEYS:
        if isinstance(loaded.get(key), dict):
            return loaded[key]
    return loaded


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Return the parameters OpenFlamingo trains: perceiver, gated cross-attention, input embeddings."""
    modules = [
        model.perceiver,
        model.lang_encoder.gated_cross_attn_layers,
        model.lang_encoder.get_input_embeddings(),
    ]
    parameters: dict[int, torch.nn.Parameter] = {}
    for module in modules:
        for parameter in module.parameters():
            parameters[id(parameter)] = parameter
    return list(parameters.values())


def parameter_aliases(model: torch.nn.Module) -> dict[int, list[str]]:
    """Map each tensor to all its state-dict names.

    open_flamingo registers every gated cross-attention layer twice (in
    `lang_encoder.gated_cross_attn_layers` and inside the wrapped decoder layer), and
    checkpoints store it under either name.
    """
    aliases: dict[int, list[str]] = {}
    for name, tensor in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(tensor), []).append(name)
    for name, tensor in model.named_buffers(remove_duplicate=False):
        aliases.setdefault(id(tensor), []).append(name)
    return aliases


def load_flamingo_checkpoint(model: torch.nn.Module, path: str | Path) -> CheckpointReport:
    """Load an OpenFlamingo checkpoint into `model`; raise InputError unless every trained
    parameter is present with the model's shape and every key belongs to the model."""
    path = Path(path)
    state = read_state_dict(path)
    model_state = model.state_dict(keep_vars=True)
    aliases = parameter_aliases(model)

    unexpected = sorted(key for key in state if key not in model_state)
    missing = []
    for parameter in trainable_parameters(model):
        names = aliases[id(parameter)]
        if not any(name in state for name in names):
            missing.append(names[0])
    wrong_shape = [
        f"{key} (checkpoint {tuple(value.shape)}, model {tuple(model_state[key].shape)})"
        for key, value in state.items()
        if key in model_state and value.shape != model_state[key].shape
    ]
    if missing or unexpected or wrong_shape:
        raise InputError(
            f"checkpoint {path} does not fit the model: "
            + "; ".join(
                part
                for part in (
                    _listing("missing trained parameters", missing),
                    _listing("unexpected keys", unexpected),
                    _listing("wrong shapes", wrong_shape),
                )
                if part
            )
            + ". Check that --model, --lm-path and the cross-attention interval match the "
            "checkpoint"
        )

    # strict=False is safe here: every key was checked above, and the keys left out are the
    # frozen vision and LM weights loaded from their own pretrained files.
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    _warn_on_untied_output_embeddings(model, state, aliases)

    report = CheckpointReport(
        path=str(path),
        sha256=file_sha256(path),
        loaded_keys=len(state),
        trainable_parameters=sum(p.numel() for p in trainable_parameters(model)),
    )
    logger.info("loaded %d tensors from %s", report.loaded_keys, path)
    return report


def _warn_on_untied_output_embeddings(model, state, aliases) -> None:
    output = model.lang_encoder.get_output_embeddings()
    input_embeddings = model.lang_encoder.get_input_embeddings()
    if output is None or output.weight is input_embeddings.weight:
        return
    names = aliases[id(output.weight)]
    if not any(name in state for name in names):
        # NOTE: OpenFlamingo neither trains nor saves untied output embeddings (LLaMA's lm_head),
        # so rows added to them for new tokens keep whatever value resizing gave them.
        logger.warning(
            "checkpoint has no %s (untied output embeddings): they keep the language model's "
            "values, and rows of tokens added to the tokenizer keep their resize-time values",
            names[0],
        )


def _listing(label: str, names: list[str], limit: int = 30) -> str:
    if not names:
        return ""
    shown = ", ".join(names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{label} ({len(names)}): {shown}{more}"


def file_sha256(path: Path, chunk_size: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Return the trained parameters under the names OpenFlamingo's training saves them with.

    These are the decoder-layer names of the gated cross-attention layers
    (`lang_encoder.<decoder layers>.<i>.gated_cross_attn_layer.*`), the perceiver's and the input
    embeddings'. Useful to write checkpoints of models trained with this package's factory.
    """
    aliases = parameter_aliases(model)
    return {
        aliases[id(parameter)][0]: parameter.detach().clone()
        for parameter in trainable_parameters(model)
    }
