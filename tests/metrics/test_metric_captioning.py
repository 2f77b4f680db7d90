"""Tests of the captioning metrics against pycocoevalcap's scorers and the CIDEr cases."""

from __future__ import annotations

import shutil

import pytest
from metric_references import METRIC_CASES

from flamingo_eval.errors import InputError
from flamingo_eval.metrics import captioning
from flamingo_eval.metrics.captioning import score_captions, tokenize_captions

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="java not installed")

CIDER = METRIC_CASES["cider"]
REFERENCES = CIDER["references"]
CANDIDATES = CIDER["candidates"]
EXPECTED = CIDER["expected"]


def test_cider_corpus_and_per_image():
    result = score_captions(CANDIDATES, REFERENCES)["cider"]
    assert result.corpus == pytest.approx(100 * EXPECTED["corpus_all_three"], rel=1e-9)
    per_image = [result.per_image[image_id] for image_id in ("1", "2", "3")]
    assert per_image == pytest.approx([100 * value for value in EXPECTED["per_image_all_three"]],
                                      rel=1e-7)


def test_cider_single_image_is_zero():
    result = score_captions({"1": CANDIDATES["1"]}, REFERENCES)["cider"]
    assert result.corpus == 0.0
    assert result.per_image == {"1": 0.0}


def test_cider_restricted_to_predicted_images():
    # References of image 3 are present but not predicted, so they must not enter the
    # document frequencies.
    subset = {image_id: CANDIDATES[image_id] for image_id in ("1", "2")}
    result = score_captions(subset, REFERENCES)["cider"]
    assert result.corpus == pytest.approx(100 * EXPECTED["images_1_2_only"], rel=1e-9)
    assert set(result.per_image) == {"1", "2"}


def test_cider_is_not_mean_of_shards():
    whole = score_captions(CANDIDATES, REFERENCES)["cider"].corpus
    first = score_captions({k: CANDIDATES[k] for k in ("1", "2")}, REFERENCES)["cider"].corpus
    last = score_captions({"3": CANDIDATES["3"]}, REFERENCES)["cider"].corpus
    assert whole != pytest.approx((first + last) / 2)


def test_tokenisation_lowercases_and_drops_punctuation():
    raw = {"1": "A dog, running on the grass.", "2": 'A man riding a "bike" on the street!',
           "3": "Two cats sleeping on a couch..."}
    expected = score_captions(CANDIDATES, REFERENCES)["cider"]
    assert score_captions(raw, REFERENCES)["cider"] == expected


def test_tokenize_captions_output():
    candidates, references = tokenize_captions({"7": "A Dog, running."}, {"7": ["The DOG's ball!"]})
    assert candidates == {"7": ["a dog running"]}
    assert references == {"7": ["the dog 's ball"]}


def test_other_scorers_match_pycocoevalcap():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {image_id: REFERENCES[image_id] for image_id in CANDIDATES}
    res = {image_id: [text] for image_id, text in CANDIDATES.items()}
    bleu, bleu_per_image = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_per_image = Rouge().compute_score(gts, res)
    meteor_scorer = Meteor()
    meteor, meteor_per_image = meteor_scorer.compute_score(gts, res)
    del meteor_scorer

    scores = score_captions(CANDIDATES, REFERENCES, ["bleu4", "rouge_l", "meteor"])

    assert scores["bleu4"].corpus == pytest.approx(100 * bleu[3])
    assert list(scores["bleu4"].per_image.values()) == pytest.approx(
        [100 * value for value in bleu_per_image[3]])
    assert scores["rouge_l"].corpus == pytest.approx(100 * rouge)
    assert list(scores["rouge_l"].per_image.values()) == pytest.approx(
        [100 * value for value in rouge_per_image])
    assert scores["meteor"].corpus == pytest.approx(100 * meteor)
    assert list(scores["meteor"].per_image.values()) == pytest.approx(
        [100 * value for value in meteor_per_image])


def test_empty_prediction_scores_zero():
    predictions = dict(CANDIDATES, **{"2": ""})
    result = score_captions(predictions, REFERENCES)["cider"]
    assert result.per_image["2"] == 0.0
    assert result.per_image["1"] > 0.0


def test_missing_references_raise():
    with pytest.raises(InputError, match="image '9' has a prediction but no reference captions"):
        score_captions({"9": "a dog"}, REFERENCES)


def test_unknown_metric_raises():
    with pytest.raises(InputError, match="unknown captioning metric 'cidr'"):
        score_captions(CANDIDATES, REFERENCES, ["cidr"])


def test_missing_java_raises(monkeypatch):
    monkeypatch.setattr(captioning.shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="java not found"):
        score_captions(CANDIDATES, REFERENCES)
