from pathlib import Path

import pytest

from flamingo_eval.data.example import Example, ImageRef
from flamingo_eval.errors import InputError
from flamingo_eval.prompts import PromptOptions, build_request, demo_count
from flamingo_eval.registry import load_task


def vqa_example(index: int, question: str, answer: str) -> Example:
    image = ImageRef(key=f"img{index}", path=Path(f"/data/img{index}.jpg"))
    return Example(
        id=str(index),
        image=image,
        fields={"question": question, "answer": answer, "image_id": index},
        target=[{"answer": answer, "answer_id": 1}],
    )


@pytest.fixture
def okvqa_prompt():
    return load_task("okvqa").prompt


def test_zero_shot_prompt_exact(okvqa_prompt):
    query = vqa_example(1, "What color is the circle?", "red")
    demos = [vqa_example(2, "How many squares?", "3"), vqa_example(3, "Is it round?", "yes")]
    request = build_request(okvqa_prompt, query, demos, shots=0)
    assert request.prompt == (
        "Question:How many squares? Short answer:3<|endofchunk|>\n"
        "Question:Is it round? Short answer:yes<|endofchunk|>\n"
        "<image>Question:What color is the circle? Short answer:"
    )
    assert request.images == (query.image,)


def test_four_shot_prompt_exact(okvqa_prompt):
    query = vqa_example(10, "What shape is blue?", "square")
    demos = [vqa_example(i, f"Question {i}?", f"answer {i}") for i in range(4)]
    request = build_request(okvqa_prompt, query, demos, shots=4)
    expected = "".join(
        f"<image>Question:Question {i}? Short answer:answer {i}<|endofchunk|>\n" for i in range(4)
    )
    expected += "<image>Question:What shape is blue? Short answer:"
    assert request.prompt == expected
    assert request.images == tuple(demo.image for demo in demos) + (query.image,)
    assert len(request.images) == 5


def test_demo_count_zero_shot_uses_text_demos():
    assert demo_count(0, PromptOptions()) == 2
    assert demo_count(0, PromptOptions(zero_shot_text_demos=0)) == 0
    assert demo_count(8, PromptOptions()) == 8


def test_template_field_missing_is_input_error(okvqa_prompt):
    example = Example(id="7", image=ImageRef("x", Path("/x.jpg")), fields={"answer": "a"})
    with pytest.raises(InputError, match="field 'question'.*example 7"):
        build_request(okvqa_prompt, example, [], shots=4)
