"""The interface every model adapter implements, and the request types the runner sends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from flamingo_eval.data.example import ImageRef

IMAGE_TOKEN = "<image>"
END_OF_CHUNK_TOKEN = "<|endofchunk|>"


@dataclass(frozen=True)
class Request:
    """One prompt for the model: text with an `<image>` marker per image, and the images in order.

    The prompt follows OpenFlamingo's format; adapters for models with another prompt format
    (IDEFICS) translate it.
    """

    prompt: str
    images: tuple[ImageRef, ...]


@dataclass(frozen=True)
class Generation:
    """A decoded continuation and the log-probability its decoding assigned to it."""

    text: str
    logprob: float


class EvalModel(ABC):
    """A model the harness can evaluate.

    `generate` serves generation tasks and `rank` serves classification tasks. Both take a batch
    of requests and must give each request the same result whatever else is in the batch.
    """

    name: str

    @abstractmethod
    def generate(
        self,
        requests: list[Request],
        *,
        num_beams: int,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        length_penalty: float = 0.0,
    ) -> list[Generation]:
        """Decode a continuation of each request."""

    @abstractmethod
    def rank(self, requests: list[Request], class_names: list[str]) -> list[list[float]]:
        """Score each class name after each request by its mean token log-likelihood."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Describe the model for run metadata and fingerprints (preset, paths, hashes, dtype)."""
