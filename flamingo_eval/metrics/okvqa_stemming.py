"""OK-VQA answer stemming, reproducing the procedure OpenFlamingo 2.0.1 uses for OK-VQA v1.1.

OK-VQA v1.1 annotation files store stemmed answers, so predictions are stemmed the same way
before VQA accuracy: each token is looked up in a fixed manual map first; otherwise a token
ending in "ing" is lemmatised as a verb with WordNet, and a token tagged as a plural noun
(NNS, NNPS) is singularised with `inflection`. All other tokens are kept as they are.

Deviation from OpenFlamingo: tokens come from `nltk.word_tokenize(text, preserve_line=True)`.
OpenFlamingo calls `word_tokenize(text)`, which first splits sentences with the punkt model. The
two differ only when a text holds several sentences, and punkt data is often unavailable offline.
"""

from __future__ import annotations

import functools
import logging

import inflection
import nltk
from nltk.stem import WordNetLemmatizer

from flamingo_eval.errors import InputError

logger = logging.getLogger(__name__)

# NLTK resources the stemmer loads, as (path for nltk.data.find, name for nltk.download).
NLTK_RESOURCES = (
    ("taggers/averaged_perceptron_tagger_eng", "averaged_perceptron_tagger_eng"),
    ("corpora/wordnet", "wordnet"),
)

# Word -> stem pairs that the automatic rules miss or get wrong, found by the OK-VQA v1.1
# authors by comparing raw and stemmed answers. Keys are matched against tokens case-sensitively,
# so keys with an apostrophe never match ("hell's" is tokenised as "hell" + "'s").
_MANUAL_PAIRS = """
    adhesives->adhesive alertness->alert alpes->alp apartments->apart are->are awning->awn
    backpackers->backpack badness->bad baldness->bald bases->base batter's->batter
    belongings->belong blindness->blind boy's->boy braves->brave brightness->bright
    browsing->brows buildings->build casings->case caves->cave charioteering->chariot
    childrens->children christmas->christmas circuses->circus clothes->cloth clothing->cloth
    coding->code conducter->conduct conferences->confer coniferous->conifer containers->contain
    controllers->control corgie->corgi couponing->coupon creame->cream crepte->crept
    cumulis->cumuli curiousity->curious dangerous->danger daughter's->daughter
    decorations->decor designers->design dining->dine directions->direct domino's->domino
    doves->dove drives->drive drunkenness->drunken earing->ear earnings->earn eatting->eat
    electicity->elect electronics->electron elevators->elev emirates->emir expressions->express
    farmer's->farmer firefighters->firefight firefighting->firefight glaced->glace
    gloves->glove gondoliere->gondolier graves->grave haircutting->haircut hamburgers->hamburg
    hawke->hawk hearding->heard hell's->hell hornes->horn illness->ill jeans->jean kid's->kid
    kindergartener->kindergarten kiting->kite las->las leaves->leaf lenses->lens lowes->low
    markings->mark married->married mating->mate meetings->meet men's->men
    microwaves->microwave minerals->miner mopeds->mope morning->morn mountainous->mountain
    mustange->mustang nationals->nation overseas->oversea oxygenize->oxygen paintings->paint
    paned->pane paring->pare pease->peas personals->person pies->pie piping->pipe
    plating->plate playfulness->play polarizing->polar police->police pooping->poop
    porche->porch potatoe->potato professionals->profession projections->project
    propellers->propel protesters->protest pudding->pud purring->pure quantas->quanta
    rabbies->rabbi raines->rain reflections->reflect regent's->regent reminders->remind
    reporters->report revelations->revel riding->ride ringe->ring ripeness->ripe
    rodeoing->rodeo routes->rout sadness->sad sautee->saute scrapbooking->scrapbook
    settings->set shelves->shelve sickness->sick skateboarders->skateboard smugness->smug
    socializing->social sometimes->sometime staring->stare stockings->stock striping->stripe
    sunbathing->sunbath sunblocker->sunblock suspenders->suspend swining->swine teasing->teas
    teething->teeth tenning->ten tennis->tennis texting->text ties->tie toileting->toilet
    tomatoe->tomato toppings->top transitions->transit travelers->travel travellers->travel
    urinating->urine vacationing->vacate vandalizers->vandal vastness->vast vegas->vegas
    veteran's->veteran wading->wade walle->wall waves->wave weddings->wed wetness->wet
    wilderness->wilder womens->women yes->yes
"""
MANUAL_STEMS: dict[str, str] = dict(pair.split("->") for pair in _MANUAL_PAIRS.split())

_PLURAL_NOUN_TAGS = ("NNS", "NNPS")


def check_nltk_data() -> None:
    """Raise InputError unless the NLTK data the stemmer needs can be loaded.

    Call it before any model work, so a run fails at once rather than after generation.
    """
    missing = [name for path, name in NLTK_RESOURCES if not _nltk_resource_exists(path)]
    if missing:
        raise _missing_data_error(missing)
    # Loading can still fail on a damaged file, so stem once to load both resources.
    stem_answer("two dogs riding skateboards")


@functools.lru_cache(maxsize=1 << 18)
def stem_answer(text: str) -> str:
    """Stem every token of `text` as OK-VQA v1.1 does and join the tokens with single spaces.

    Raises InputError when the NLTK tagger or WordNet is not installed; it never returns the
    text unstemmed.
    """
    try:
        tagged = nltk.pos_tag(nltk.word_tokenize(text, preserve_line=True))
        return " ".join(_stem_token(token, tag) for token, tag in tagged)
    except LookupError:
        missing = [name for path, name in NLTK_RESOURCES if not _nltk_resource_exists(path)]
        raise _missing_data_error(missing or [name for _, name in NLTK_RESOURCES]) from None


def _stem_token(token: str, tag: str) -> str:
    if token in MANUAL_STEMS:
        return MANUAL_STEMS[token]
    if token.endswith("ing"):
        return _lemmatizer().lemmatize(token, pos="v")
    if tag.startswith(_PLURAL_NOUN_TAGS):
        return inflection.singularize(token)
    return token


@functools.lru_cache(maxsize=1)
def _lemmatizer() -> WordNetLemmatizer:
    return WordNetLemmatizer()


def _nltk_resource_exists(path: str) -> bool:
    """Return whether NLTK finds `path` as a folder or as a zip file, as its corpus loaders do."""
    for candidate in (path, f"{path}.zip"):
        try:
            nltk.data.find(candidate)
        except LookupError:
            continue
        return True
    return False


def _missing_data_error(download_names: list[str]) -> InputError:
    downloads = " and ".join(f"nltk.download({name!r})" for name in download_names)
    return InputError(
        f"NLTK data for OK-VQA stemming not found: {', '.join(download_names)}; run {downloads} "
        "in Python, or set NLTK_DATA to a folder that contains it"
    )
