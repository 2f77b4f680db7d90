"""Answer normalisation of the VQA evaluation code (GT-Vision-Lab's vqaEval.py).

OpenFlamingo 2.0.1 ships a copy of this code with the same tables, so both accuracy modes use
the functions here and differ only in when they apply them. The quirks of the original are
reproduced on purpose, because scores must match it exactly:
- a punctuation mark is deleted, not replaced by a space, when the text has a mark followed or
  preceded by a space, or any digit-comma-digit sequence;
- at most 32 periods are removed: the original passes `re.UNICODE` (32) as `re.sub`'s count;
- contraction keys with capitals ("Im", "Ive") never match, because words are lower-cased first.
"""

from __future__ import annotations

import functools
import re

PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
               "@", "`", ",", "?", "!")
ARTICLES = frozenset({"a", "an", "the"})
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}

# Contractions written without apostrophes, mapped to their usual spelling ("dont=don't").
# "somebody'd=somebodyd" runs the other way in the original table and is kept as it is.
_CONTRACTION_PAIRS = """
    'ow'sat='ow's'at 'ows'at='ow's'at aint=ain't arent=aren't cant=can't couldn'tve=couldn't've
    couldnt=couldn't couldnt've=couldn't've couldve=could've didnt=didn't doesnt=doesn't
    dont=don't hadn'tve=hadn't've hadnt=hadn't hadnt've=hadn't've hasnt=hasn't havent=haven't
    he'dve=he'd've hed=he'd hed've=he'd've hes=he's howd=how'd howll=how'll hows=how's
    I'dve=I'd've Id've=I'd've Im=I'm isnt=isn't it'dve=it'd've itd=it'd itd've=it'd've
    itll=it'll Ive=I've let's=let's maam=ma'am mightn'tve=mightn't've mightnt=mightn't
    mightnt've=mightn't've mightve=might've mustnt=mustn't mustve=must've neednt=needn't
    notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at shant=shan't she'dve=she'd've
    she's=she's shed've=she'd've shouldn'tve=shouldn't've shouldnt=shouldn't
    shouldnt've=shouldn't've shouldve=should've somebody'd=somebodyd somebody'dve=somebody'd've
    somebodyd've=somebody'd've somebodyll=somebody'll somebodys=somebody's
    someone'dve=someone'd've someoned=someone'd someoned've=someone'd've someonell=someone'll
    someones=someone's something'dve=something'd've somethingd=something'd
    somethingd've=something'd've somethingll=something'll thats=that's there'dve=there'd've
    thered=there'd thered've=there'd've therere=there're theres=there's they'dve=they'd've
    theyd=they'd theyd've=they'd've theyll=they'll theyre=they're theyve=they've twas='twas
    wasnt=wasn't we'dve=we'd've wed've=we'd've werent=weren't weve=we've whatll=what'll
    whatre=what're whats=what's whatve=what've whens=when's whered=where'd wheres=where's
    whereve=where've who'dve=who'd've whod=who'd whod've=who'd've wholl=who'll whos=who's
    whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldn'tve=wouldn't've
    wouldnt=wouldn't wouldnt've=wouldn't've wouldve=would've y'all'dve=y'all'd've
    y'alld've=y'all'd've y'allll=y'all'll yall=y'all yall'd've=y'all'd've yall'll=y'all'll
    you'dve=you'd've youd=you'd youd've=you'd've youll=you'll youre=you're youve=you've
"""
CONTRACTIONS: dict[str, str] = dict(pair.split("=") for pair in _CONTRACTION_PAIRS.split())

_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# The original pattern is "(?!<=\d)(\.)(?!\d)", a typo for a lookbehind. Its first lookahead
# always succeeds at a period, so the pattern removes every period not followed by a digit.
_PERIOD = re.compile(r"\.(?!\d)")
_MAX_PERIODS_REMOVED = 32
_CACHE_SIZE = 1 << 20


@functools.lru_cache(maxsize=_CACHE_SIZE)
def clean_whitespace(text: str) -> str:
    """Replace newlines and tabs by spaces and strip the ends, as both modes do first."""
    return text.replace("\n", " ").replace("\t", " ").strip()


@functools.lru_cache(maxsize=_CACHE_SIZE)
def normalize_answer(text: str) -> str:
    """Normalise punctuation, number words, articles and contractions of a cleaned answer."""
    return _normalize_words(_strip_punctuation(text))


def _strip_punctuation(text: str) -> str:
    delete_marks = _DIGIT_COMMA_DIGIT.search(text) is not None
    result = text
    for mark in PUNCTUATION:
        if mark not in result:
            continue
        # The test reads the original text, not the partly processed one, as the original does.
        if delete_marks or f"{mark} " in text or f" {mark}" in text:
            result = result.replace(mark, "")
        else:
            result = result.replace(mark, " ")
    return _PERIOD.sub("", result, count=_MAX_PERIODS_REMOVED)


def _normalize_words(text: str) -> str:
    words = []
    for word in text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)
