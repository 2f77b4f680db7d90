"""Tests of OK-VQA answer stemming against OpenFlamingo's stemmer and of its data checks.

The reference is open_flamingo's OKVQAStemmer with nltk's word tokenizer called with
preserve_line=True, the one deviation the product names.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import nltk
import pytest
from metric_references import REAL_ANNOTATIONS

from flamingo_eval.errors import InputError
from flamingo_eval.metrics.okvqa_stemming import MANUAL_STEMS, check_nltk_data, stem_answer
from flamingo_eval.postprocess import apply_postprocess, check_postprocess


def nltk_data_available() -> bool:
    try:
        check_nltk_data()
    except InputError:
        return False
    return True


needs_nltk_data = pytest.mark.skipif(
    not nltk_data_available(), reason="NLTK tagger and WordNet not installed; set NLTK_DATA"
)

DOCUMENTED_EXAMPLES = {
    "riding": "ride",
    "two dogs riding skateboards": "two dog ride skateboard",
    "leaves": "leaf",
    "glasses": "glass",
    "tennis": "tennis",
    "christmas": "christmas",
    "buses": "bus",
    "skiing": "ski",
    "mice": "mice",
}


@pytest.fixture(scope="module")
def reference_stem():
    """OpenFlamingo's stemmer, with its tokenizer switched to preserve_line=True."""
    from open_flamingo.eval import ok_vqa_utils

    original = nltk.tokenize.word_tokenize
    patch = pytest.MonkeyPatch()
    patch.setattr(
        ok_vqa_utils.nltk.tokenize, "word_tokenize", functools.partial(original, preserve_line=True)
    )
    yield ok_vqa_utils.stemmer.stem
    patch.undo()


def real_answers(count: int) -> list[str]:
    answers = set()
    for name in ("textvqa", "vizwiz"):
        path = REAL_ANNOTATIONS / name / "val_annotations_vqa_format.json"
        annotations = json.loads(path.read_text())["annotations"]
        answers.update(record["answer"] for ann in annotations for record in ann["answers"])
    return random.Random(0).sample(sorted(answers), count)


@needs_nltk_data
@pytest.mark.parametrize(("text", "expected"), sorted(DOCUMENTED_EXAMPLES.items()))
def test_documented_examples(text, expected, reference_stem):
    assert stem_answer(text) == expected
    assert reference_stem(text) == expected


@needs_nltk_data
def test_manual_map_equals_openflamingo():
    from open_flamingo.eval.ok_vqa_utils import _MANUAL_MATCHES

    assert MANUAL_STEMS == _MANUAL_MATCHES


@needs_nltk_data
def test_hand_cases_match_reference(reference_stem):
    texts = [
        "", "Riding", "He is running.", "skateboarders and surfers", "the Rolling Stones",
        "hell's kitchen", "boy's toys", "jeans", "yes", "dining tables", "two horses, one dog",
        "New York Yankees", "kiting", "wings", "sheep", "geese", "people", "teeth", "analyses",
        "knives", "cooking", "sing", "king", "ring", "things", "clothing stores", "ALL CAPS WORDS",
    ] + sorted(MANUAL_STEMS)
    assert [stem_answer(text) for text in texts] == [reference_stem(text) for text in texts]


@needs_nltk_data
@pytest.mark.skipif(not REAL_ANNOTATIONS.is_dir(), reason="real annotations not found")
def test_real_answers_match_reference(reference_stem):
    texts = real_answers(400)
    mismatches = [
        (text, stem_answer(text), reference_stem(text))
        for text in texts
        if stem_answer(text) != reference_stem(text)
    ]
    assert mismatches == []


@needs_nltk_data
def test_postprocess_chain_matches_openflamingo(reference_stem):
    from open_flamingo.eval.vqa_metric import postprocess_vqa_generation

    generations = ["two dogs riding, Question: x", "skiing Short answer", "leaves\nAnswer"]
    for text in generations:
        expected = reference_stem(postprocess_vqa_generation(text))
        assert apply_postprocess(["vqa_answer", "okvqa_stem"], text) == expected


@needs_nltk_data
def test_check_passes_with_data():
    check_nltk_data()
    check_postprocess(["vqa_answer", "okvqa_stem"])


def run_without_data(nltk_data: str, code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter whose NLTK search path is only `nltk_data`."""
    env = {"NLTK_DATA": nltk_data, "HOME": nltk_data, "PATH": "/usr/bin:/bin"}
    script = (
        "import nltk, sys\n"
        "nltk.data.path[:] = [sys.argv[1]]\n"
        "from flamingo_eval.errors import InputError\n"
        f"try:\n    {code}\nexcept InputError as error:\n    print(error)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, nltk_data], env=env, capture_output=True, text=True,
        timeout=120, check=True,
    )


def test_missing_data_names_downloads(tmp_path):
    result = run_without_data(
        str(tmp_path),
        "from flamingo_eval.postprocess import apply_postprocess\n"
        "    print('unexpected:', apply_postprocess(['okvqa_stem'], 'dogs'))",
    )
    assert "unexpected" not in result.stdout
    assert "nltk.download('averaged_perceptron_tagger_eng')" in result.stdout
    assert "nltk.download('wordnet')" in result.stdout
    assert "NLTK_DATA" in result.stdout


@needs_nltk_data
def test_missing_wordnet_only(tmp_path):
    name = "averaged_perceptron_tagger_eng.zip"
    zips = [Path(folder) / "taggers" / name for folder in nltk.data.path]
    zips = [path for path in zips if path.is_file()]
    if not zips:
        pytest.skip("the tagger is not installed as a zip file")
    (tmp_path / "taggers").mkdir()
    shutil.copy(zips[0], tmp_path / "taggers")
    result = run_without_data(
        str(tmp_path),
        "from flamingo_eval.postprocess import check_nltk_data\n    check_nltk_data()\n"
        "    print('unexpected: no error')",
    )
    assert "unexpected" not in result.stdout
    assert "nltk.download('wordnet')" in result.stdout
    assert "averaged_perceptron_tagger_eng" not in result.stdout
