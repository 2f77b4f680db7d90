"""Model loading options shared by the command line and the Python API."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from flamingo_eval.errors import InputError
from flamingo_eval.models.precision import PRECISIONS

PATH_OVERRIDES = ("checkpoint", "lm_path", "tokenizer_path", "vision_encoder")


@dataclass(frozen=True)
class ModelOptions:
    """Model loading options: device, precision, and local paths that replace a preset's parts.

    `checkpoint`: trained weights file or folder (OpenFlamingo presets), or the whole model's
    folder or hub id (IDEFICS presets). `lm_path`, `tokenizer_path`: language model and tokenizer
    folders or hub ids. `vision_encoder`: NAME:PRETRAINED for open_clip. `trust_remote_code`:
    allow code shipped with a model to run.
    """

    device: str = "cpu"
    precision: str = "fp32"
    checkpoint: str | None = None
    lm_path: str | None = None
    tokenizer_path: str | None = None
    vision_encoder: str | None = None
    trust_remote_code: bool = False

    def given_overrides(self) -> list[str]:
        """Return the path overrides that are set, as command-line flags with their values."""
        return [
            f"--{name.replace('_', '-')} {getattr(self, name)}"
            for name in PATH_OVERRIDES
            if getattr(self, name)
        ]

    def reject_overrides(self, model_name: str, reason: str) -> None:
        """Raise InputError naming every path override that is set, for a model that takes none."""
        given = self.given_overrides()
        if given:
            raise InputError(f"model {model_name} takes no {', '.join(given)}: {reason}")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the model loading flags (except --model) to a `flamingo-eval run` parser."""
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda or cuda:0 (default: cpu)")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=list(PRECISIONS),
        help="fp32, bf16 or fp16 weights, or amp_bf16: float32 weights with bfloat16 autocast (default: fp32)",
    )
    parser.add_argument("--checkpoint", help="trained weights file (OpenFlamingo checkpoint.pt), or the model folder for IDEFICS; replaces the preset's")
    parser.add_argument("--lm-path", help="language model folder or hub id; replaces the preset's")
    parser.add_argument("--tokenizer-path", help="tokenizer folder or hub id (default: --lm-path, else the preset's)")
    parser.add_argument("--vision-encoder", help="open_clip vision tower as NAME:PRETRAINED (a tag, a weights file or 'random'); replaces the preset's")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow modelling code shipped with a model to run (needed by openflamingo-3b's MPT-1B)")


def model_options_from_args(args: argparse.Namespace) -> ModelOptions:
    """Read ModelOptions from parsed arguments; flags a parser lacks take their defaults."""
    return ModelOptions(
        device=getattr(args, "device", "cpu"),
        precision=getattr(args, "precision", "fp32"),
        checkpoint=_optional_str(getattr(args, "checkpoint", None)),
        lm_path=_optional_str(getattr(args, "lm_path", None)),
        tokenizer_path=_optional_str(getattr(args, "tokenizer_path", None)),
        vision_encoder=_optional_str(getattr(args, "vision_encoder", None)),
        trust_remote_code=bool(getattr(args, "trust_remote_code", False)),
    )


def _optional_str(value) -> str | None:
    return None if value is None else str(value)
