"""Post-processing of generated text into the prediction that metrics score.

A task file lists post-processors by name (`postprocess: [vqa_answer, okvqa_stem]`); they are
applied in that order. The defaults reproduce OpenFlamingo 2.0.1's evaluation code; the other
entries are named options.
"""

from __future__ import annotations

import re
from typing import Callable

from flamingo_eval.errors import InputError
from flamingo_eval.metrics.okvqa_stemming import check_nltk_data, stem_answer

__all__ = [
    "POSTPROCESSORS",
    "apply_postprocess",
    "check_nltk_data",
    "check_postprocess",
    "cut_caption",
    "cut_vqa_answer",
    "cut_vqa_answer_strict",
]

_VQA_STOP_WORDS = re.compile("Question|Answer|Short")
_STRICT_STOPS = re.compile("\n|" + re.escape("<|endofchunk|>"))


def cut_vqa_answer(text: str) -> str:
    """Cut `text` at the first "Question", "Answer" or "Short", then at the first ", ".

    This is OpenFlamingo's VQA heuristic, kept as the default protocol. It also cuts real
    answers ("Shorts" becomes "", "red, white and blue" becomes "red"). The text is not
    stripped, because VQA accuracy strips it.
    """
    answer = _VQA_STOP_WORDS.split(text, maxsplit=1)[0]
    return answer.split(", ", 1)[0]


def cut_vqa_answer_strict(text: str) -> str:
    """Cut `text` at the first newline or end-of-chunk token and strip surrounding whitespace.

    A stricter option than `cut_vqa_answer`: it stops only at the markers that end an answer in
    the prompt format, so "Shorts" and "red, white and blue" stay whole.
    """
    return _STRICT_STOPS.split(text, maxsplit=1)[0].strip()


def cut_caption(text: str) -> str:
    """Cut `text` at the first "Output" and remove double quotes, as OpenFlamingo does."""
    return text.split("Output", 1)[0].replace('"', "")


POSTPROCESSORS: dict[str, Callable[[str], str]] = {
    "vqa_answer": cut_vqa_answer,
    "vqa_answer_strict": cut_vqa_answer_strict,
    "okvqa_stem": stem_answer,
    "caption": cut_caption,
}


def check_postprocess(names: list[str]) -> None:
    """Raise InputError for an unknown post-processor name or missing data that one needs.

    Call it before any model work: "okvqa_stem" needs NLTK data that may not be installed.
    """
    for name in names:
        if name not in POSTPROCESSORS:
            known = ", ".join(POSTPROCESSORS)
            raise InputError(f"unknown post-processor {name!r}; known post-processors: {known}")
    if "okvqa_stem" in names:
        check_nltk_data()


def apply_postprocess(names: list[str], text: str) -> str:
    """Apply the named post-processors to `text`, in order."""
    for name in names:
        try:
            function = POSTPROCESSORS[name]
        except KeyError:
            known = ", ".join(POSTPROCESSORS)
            raise InputError(
                f"unknown post-processor {name!r}; known post-processors: {known}"
            ) from None
        text = function(text)
    return text
