"""Prompt building: an evaluated item and its demonstrations become one interleaved request."""

from __future__ import annotations

from dataclasses import dataclass

from flamingo_eval.data.example import Example
from flamingo_eval.errors import InputError
from flamingo_eval.models.base import IMAGE_TOKEN, Request
from flamingo_eval.registry import PromptSpec

ZERO_SHOT_TEXT_DEMOS = 2


@dataclass(frozen=True)
class PromptOptions:
    """Protocol options of prompt building.

    `zero_shot_text_demos`: at 0 shots, this many demonstrations are shown with their `<image>`
    markers removed (text only), as OpenFlamingo does following Flamingo.
    """

    zero_shot_text_demos: int = ZERO_SHOT_TEXT_DEMOS


def demo_count(shots: int, options: PromptOptions) -> int:
    """Number of demonstrations to draw for `shots` (text-only ones included at 0 shots)."""
    return options.zero_shot_text_demos if shots == 0 else shots


def fill(template: str, example: Example, template_name: str) -> str:
    try:
        return template.format(**example.fields)
    except KeyError as error:
        raise InputError(
            f"prompt.{template_name} uses field {error.args[0]!r}, which example {example.id} "
            f"does not have (its fields: {', '.join(sorted(example.fields))})"
        ) from None


def build_request(
    spec: PromptSpec, example: Example, demos: list[Example], shots: int
) -> Request:
    """Build the request for `example` preceded by `demos`.

    Every demonstration is followed by the separator, the last one too. At 0 shots the demos are
    text only: their `<image>` markers are removed and only the query's image is sent.
    """
    context = "".join(fill(spec.demo, demo, "demo") + spec.separator for demo in demos)
    if shots == 0:
        context = context.replace(IMAGE_TOKEN, "")
        images = (example.image,)
    else:
        images = tuple(demo.image for demo in demos) + (example.image,)
    prompt = context + fill(spec.query, example, "query")
    if prompt.count(IMAGE_TOKEN) != len(images):
        raise InputError(
            f"prompt for item {example.id} has {prompt.count(IMAGE_TOKEN)} {IMAGE_TOKEN} markers "
            f"but {len(images)} images; each template must contain exactly one {IMAGE_TOKEN}"
        )
    return Request(prompt=prompt, images=images)
