"""Captioning metrics through pycocoevalcap's scorers: CIDEr, BLEU-4, METEOR, ROUGE-L, SPICE.

Candidates and references are PTB-tokenised (lower-cased, punctuation removed) together, then
each scorer runs once on the whole set. CIDEr-D takes its document frequencies from the
references of the scored images, so scores of separate shards or batches must never be
averaged: score all gathered predictions in one call.

The scorers are called directly rather than through `COCOEvalCap.evaluate()`, which always
constructs SPICE, and SPICE downloads Stanford CoreNLP the first time. SPICE runs only when
requested. The PTB tokenizer, METEOR and SPICE run as Java processes and write temporary files
inside pycocoevalcap's installed package folder.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from typing import Sequence

from flamingo_eval.errors import InputError

logger = logging.getLogger(__name__)

CAPTION_METRICS = ("cider", "bleu4", "meteor", "rouge_l", "spice")
_DEFAULT_METRICS = ("cider",)


@dataclass(frozen=True)
class CaptionScore:
    """One metric's corpus score and per-image scores, both x100."""

    corpus: float
    per_image: dict[str, float]


def check_java() -> None:
    """Raise InputError unless a `java` executable is on PATH (pycocoevalcap needs one)."""
    if shutil.which("java") is None:
        raise InputError(
            "java not found on PATH; captioning metrics run pycocoevalcap's PTB tokenizer as a "
            "Java process, so install a Java runtime (for example OpenJDK 17)"
        )


def score_captions(
    predictions: dict[str, str],
    references: dict[str, list[str]],
    metrics: Sequence[str] = _DEFAULT_METRICS,
) -> dict[str, CaptionScore]:
    """Score predicted captions against reference captions, keyed by image id.

    Only the images in `predictions` are scored; references of other images are ignored.
    Returns one CaptionScore per requested metric name (see CAPTION_METRICS).
    """
    unknown = [name for name in metrics if name not in CAPTION_METRICS]
    if unknown:
        raise InputError(
            f"unknown captioning metric {unknown[0]!r}; expected one of {CAPTION_METRICS}"
        )
    if not predictions:
        raise InputError("captioning metrics: no predictions to score")
    _check_captions(predictions, references)
    check_java()

    image_ids = list(predictions)
    candidates, tokenized_references = tokenize_captions(
        {image_id: predictions[image_id] for image_id in image_ids},
        {image_id: references[image_id] for image_id in image_ids},
    )
    return {
        name: _run_scorer(name, tokenized_references, candidates, image_ids) for name in metrics
    }


def tokenize_captions(
    predictions: dict[str, str], references: dict[str, list[str]]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """PTB-tokenise candidates and references in one Java call.

    Returns both as pycocoevalcap's scorers take them: image id -> list of tokenised captions.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = {}
    for image_id, text in predictions.items():
        captions[("candidate", image_id)] = [{"caption": _one_line(text)}]
    for image_id, texts in references.items():
        captions[("reference", image_id)] = [{"caption": _one_line(text)} for text in texts]
    tokenized = PTBTokenizer().tokenize(captions)
    if len(tokenized) != len(captions):
        raise RuntimeError(
            f"PTB tokenizer returned {len(tokenized)} of {len(captions)} caption groups; "
            "check that `java` runs and that pycocoevalcap's folder is writable"
        )
    candidates = {image_id: tokenized[("candidate", image_id)] for image_id in predictions}
    tokenized_references = {image_id: tokenized[("reference", image_id)] for image_id in references}
    return candidates, tokenized_references


# The PTB tokenizer's Java process splits its input at these characters as well as at "\n",
# so one of them inside a caption would shift every later caption onto the wrong image.
_JAVA_LINE_BREAKS = str.maketrans({character: " " for character in "\r\x0b\x0c\u2028\u2029"})


def _one_line(text: str) -> str:
    return text.replace("\n", " ").translate(_JAVA_LINE_BREAKS)


def _run_scorer(
    name: str,
    references: dict[str, list[str]],
    candidates: dict[str, list[str]],
    image_ids: list[str],
) -> CaptionScore:
    logger.info("computing %s on %d images", name, len(image_ids))
    if name == "cider":
        from pycocoevalcap.cider.cider import Cider

        corpus, per_image = Cider().compute_score(references, candidates)
        return _to_percent(corpus, per_image, image_ids)
    if name == "bleu4":
        from pycocoevalcap.bleu.bleu import Bleu

        corpus_by_n, per_image_by_n = Bleu(4).compute_score(references, candidates, verbose=0)
        return _to_percent(corpus_by_n[3], per_image_by_n[3], image_ids)
    if name == "rouge_l":
        from pycocoevalcap.rouge.rouge import Rouge

        corpus, per_image = Rouge().compute_score(references, candidates)
        return _to_percent(corpus, per_image, image_ids)
    if name == "meteor":
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            corpus, per_image = scorer.compute_score(references, candidates)
        finally:
            # Meteor's destructor stops its Java process.
            del scorer
        return _to_percent(corpus, per_image, image_ids)
    return _run_spice(references, candidates)


def _run_spice(references: dict[str, list[str]], candidates: dict[str, list[str]]) -> CaptionScore:
    """Run SPICE, which downloads Stanford CoreNLP on first use and then caches it."""
    # NOTE: never run in tests here, because the CoreNLP download needs a network.
    from pycocoevalcap.spice.spice import Spice

    corpus, per_image = Spice().compute_score(references, candidates)
    # SPICE scores the images in sorted id order, unlike the other scorers.
    scores = [image_score["All"]["f"] for image_score in per_image]
    return _to_percent(corpus, scores, sorted(candidates))


def _to_percent(corpus: float, per_image: Sequence[float], image_ids: list[str]) -> CaptionScore:
    if len(per_image) != len(image_ids):
        raise RuntimeError(f"scorer returned {len(per_image)} scores for {len(image_ids)} images")
    return CaptionScore(
        corpus=100 * float(corpus),
        per_image={image_id: 100 * float(score) for image_id, score in zip(image_ids, per_image)},
    )


def _check_captions(predictions: dict[str, str], references: dict[str, list[str]]) -> None:
    for image_id, text in predictions.items():
        if not isinstance(text, str):
            raise InputError(
                f"captioning metrics: image {image_id!r}: prediction must be a string, "
                f"not {type(text).__name__}"
            )
        texts = references.get(image_id)
        if not texts:
            raise InputError(
                f"captioning metrics: image {image_id!r} has a prediction but no reference "
                "captions; check that predictions and annotations come from the same split"
            )
        if not all(isinstance(reference, str) for reference in texts):
            raise InputError(
                f"captioning metrics: image {image_id!r}: reference captions must be strings"
            )
