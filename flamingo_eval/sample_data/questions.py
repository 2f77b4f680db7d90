"""Questions about a scene with one correct answer each, and simulated annotators' answers."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from flamingo_eval.sample_data.scenes import (
    COLOURS,
    POSITION_NAMES,
    SHAPES,
    Scene,
    random_scene,
    with_article,
)

ANSWERS_PER_QUESTION = 10

# A near variant that some annotators give instead of the main answer. Each variant is already in
# OK-VQA v1.1's stemmed form (no plural nouns, no "-ing" words).
ANSWER_VARIANTS = {
    "red": "dark red",
    "blue": "light blue",
    "green": "dark green",
    "yellow": "gold",
    "purple": "violet",
    "orange": "dark orange",
    "circle": "round",
    "square": "rectangle",
    "triangle": "triangular",
    "diamond": "rhombus",
    "circles": "circle",
    "squares": "square",
    "triangles": "triangle",
    "diamonds": "diamond",
    "1": "one",
    "2": "two",
    "3": "three",
    "4": "four",
    "yes": "yeah",
    "no": "nope",
    "left": "left side",
    "right": "right side",
}


@dataclass(frozen=True)
class QuestionAnswer:
    """A question, its answer as VQA annotators write it, and that answer's OK-VQA stemmed form.

    `answer_type` uses VQA's three types ("yes/no", "number", "other"); `question_type` is the
    question's opening words, as VQA's files store it.
    """

    question: str
    answer: str
    answer_type: str
    question_type: str
    stemmed: str


def _qa(
    question: str, answer: str, answer_type: str, question_type: str, stemmed: str = ""
) -> QuestionAnswer:
    return QuestionAnswer(question, answer, answer_type, question_type, stemmed or answer)


def candidate_questions(scene: Scene, rng: random.Random) -> dict[str, list[QuestionAnswer]]:
    """List every unambiguous question about the scene's shapes, grouped by kind."""
    kinds: dict[str, list[QuestionAnswer]] = {
        "colour": [], "shape": [], "count": [], "exists": [], "position": [], "plural": []
    }
    for shape in SHAPES:
        matching = scene.with_shape(shape)
        if len(matching) == 1:
            kinds["colour"].append(
                _qa(f"What color is the {shape}?", matching[0].colour, "other", "what color is the")
            )
        if matching:
            kinds["count"].append(
                _qa(f"How many {shape}s are there?", str(len(matching)), "number", "how many")
            )
    for colour in COLOURS:
        matching = scene.with_colour(colour)
        if len(matching) == 1:
            question = f"What shape is the {colour} object?"
            kinds["shape"].append(_qa(question, matching[0].shape, "other", "what shape is the"))
    if scene.objects:
        kinds["count"].append(
            _qa("How many shapes are there?", str(len(scene.objects)), "number", "how many")
        )

        # One "yes" and one "no" question, so that either answer is equally likely.
        present = rng.choice(scene.objects).name
        names = {obj.name for obj in scene.objects}
        all_names = [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]
        absent = rng.choice([name for name in all_names if name not in names])
        for name, answer in ((present, "yes"), (absent, "no")):
            question = f"Is there {with_article(name)}?"
            kinds["exists"].append(_qa(question, answer, "yes/no", "is there a"))

    for obj in scene.objects:
        if obj.column != 1:
            kinds["position"].append(
                _qa(
                    f"Is the {obj.name} on the left or on the right?",
                    POSITION_NAMES[obj.column],
                    "other",
                    "is the",
                )
            )
    kinds["plural"] = _plural_questions(scene)
    return {kind: questions for kind, questions in kinds.items() if questions}


def _plural_questions(scene: Scene) -> list[QuestionAnswer]:
    """Ask for the shape of two objects that share it. The answer is a plural noun, which
    OK-VQA stores singular."""
    questions = []
    for shape in SHAPES:
        matching = scene.with_shape(shape)
        colours = [obj.colour for obj in matching if len(scene.with_colour(obj.colour)) == 1]
        if len(colours) >= 2:
            first, second = colours[:2]
            questions.append(
                _qa(
                    f"What shape are the {first} and {second} objects?",
                    f"{shape}s",
                    "other",
                    "what shape are the",
                    stemmed=shape,
                )
            )
    return questions


def pick_questions(scene: Scene, rng: random.Random, count: int) -> list[QuestionAnswer]:
    """Pick up to `count` different questions, each of a kind chosen uniformly among the kinds the
    scene allows, so no kind dominates just because a scene has many objects."""
    kinds = candidate_questions(scene, rng)
    picked: list[QuestionAnswer] = []
    while len(picked) < count and kinds:
        kind = rng.choice(sorted(kinds))
        options = kinds[kind]
        question = options.pop(rng.randrange(len(options)))
        if not options:
            del kinds[kind]
        if all(question.question != other.question for other in picked):
            picked.append(question)
    return picked


def annotator_answers(
    rng: random.Random, main: str, variants: dict[str, str] = ANSWER_VARIANTS
) -> list[str]:
    """Return ten answers: the first annotator and at least six more give `main`, up to three
    give its near variant (when one is known), so `main` always scores full VQA accuracy."""
    answers = [main] * ANSWERS_PER_QUESTION
    variant = variants.get(main)
    if variant is not None:
        for position in rng.sample(range(1, ANSWERS_PER_QUESTION), rng.choice([0, 1, 2, 2, 3])):
            answers[position] = variant
    return answers


def confidences(rng: random.Random, answers: list[str], main: str) -> list[str]:
    """Annotators' confidences: mostly "yes" for the main answer, lower for variants."""
    result = []
    for answer in answers:
        if answer == main:
            result.append(rng.choices(["yes", "maybe"], weights=[9, 1])[0])
        else:
            result.append(rng.choice(["yes", "maybe", "no"]))
    return result


def scenes_with_questions(
    rng: random.Random,
    total: int,
    questions_per_image: dict[int, int],
    make_scene: Callable[[random.Random], Scene] = random_scene,
) -> list[tuple[Scene, list[QuestionAnswer]]]:
    """Draw scenes until they carry `total` questions. `questions_per_image` maps a number of
    questions to its relative weight; the last scene takes only as many as are still missing."""
    result: list[tuple[Scene, list[QuestionAnswer]]] = []
    missing = total
    while missing > 0:
        scene = make_scene(rng)
        weights = list(questions_per_image.values())
        count = rng.choices(list(questions_per_image), weights=weights)[0]
        questions = pick_questions(scene, rng, min(count, missing))
        result.append((scene, questions))
        missing -= len(questions)
    return result
