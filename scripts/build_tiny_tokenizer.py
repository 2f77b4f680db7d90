"""Train the byte-level BPE tokenizer that the offline `tiny` and `canary` presets ship with.

The output, flamingo_eval/models/assets/tiny_tokenizer/tokenizer.json, is committed, so loading
a tiny model needs neither a download nor a training step. Re-run this script only to change the
vocabulary: python scripts/build_tiny_tokenizer.py
"""

from __future__ import annotations

import itertools
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

OUTPUT = Path(__file__).resolve().parent.parent / "flamingo_eval/models/assets/tiny_tokenizer"
VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<|endoftext|>", "<|endofchunk|>", "<image>", "<PAD>"]

# Words of the prompt templates and of the generated sample data (scenes of coloured shapes),
# so that frequent answers are single tokens; any other text still encodes byte by byte.
PROMPT_WORDS = (
    "Question: Short answer: Answer: Output: is an image with written on it. Is it hateful? "
    "yes no unanswerable"
).split()
SCENE_WORDS = (
    "red green blue yellow purple orange black white gray grey brown pink "
    "circle square triangle star diamond cross shape shapes object objects "
    "one two three four five six seven eight nine ten 0 1 2 3 4 5 6 7 8 9 10 "
    "a an the of in on at to and or with there are is what which how many color colour "
    "left right top bottom middle center above below next picture photo image scene "
    "small large big background some only single pair"
).split()


def corpus() -> list[str]:
    """Return training sentences: the vocabulary in the contexts the prompts use."""
    sentences = [" ".join(PROMPT_WORDS), " ".join(SCENE_WORDS)]
    for first, second in itertools.product(SCENE_WORDS, repeat=2):
        sentences.append(f"Question:What {first} {second}? Short answer:{first}")
        sentences.append(f"Output:A {first} {second} on a {second} background.")
    return sentences


def main() -> None:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(OUTPUT / "tokenizer.json"))
    print(f"wrote {OUTPUT / 'tokenizer.json'} ({tokenizer.get_vocab_size()} tokens)")


if __name__ == "__main__":
    main()
