"""Train the canary checkpoints: the `tiny` Flamingo taught the generated sample tasks.

A randomly initialised tiny model scores near zero on every task, so a bug that pairs the wrong
image with a prompt, breaks a padding mask or mangles post-processing changes nothing visible.
This script trains the same architecture (`build_tiny()`) on generated sample tasks, in the
harness's own prompt strings (`build_request`), so that such bugs show up as score drops.

The training data are the train splits of all eight sample tasks, written 16 times with the
seeds 0 to 15 (`write_sample(task, dir, seed)`). The harness's sample data, and every score in
docs/benchmarks/canary.md, come from seed 0, whose val and test splits are never trained on.

The vision tower keeps its random `build_tiny()` weights: `Flamingo.forward` runs it under
`torch.no_grad()`, as OpenFlamingo trains with a frozen vision encoder. Training it as well
scored lower in two kinds of runs: on the seed-0 suite alone (ImageNet sample top-1 55% after
3,000 steps, against 76% frozen), and with 8 suites, where 1,000 or 2,000 steps that trained
the tower on sequences of one to three images came first (ImageNet 69% and 64%, against 79%
frozen). Frozen, its outputs are computed once per image (for a few pixel shifts) and stored,
which roughly halved the time per step. Everything else is trained: perceiver, gated
cross-attention, and the language model with its embeddings.

Each training sequence is one request as the runner builds it (k demonstrations from the train
split, then the query) followed by the query's answer and `<|endofchunk|>`. The loss covers the
query's answer and the answers of the image demonstrations before it. Shot counts are mixed
(0 to 8, sometimes 12). Every batch holds one task and one shot count, so that no
padding images are needed and text padding stays short.

Run from the repository root:

    .venv/bin/python scripts/train_canary.py

It writes flamingo_eval/models/assets/canary/canary-early.safetensors (after --early-step
steps) and canary.safetensors (after the last step), and prints the training wall time. The
defaults are sized to finish within 15 minutes on two CPU cores and use up to about 8 GB of memory.
Results are reproducible for a fixed --threads (default 1: on a machine shared with other jobs,
two threads spin-waiting on each other ran several times slower than one).
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from flamingo_eval import data as data_loading
from flamingo_eval.data.example import Example
from flamingo_eval.models.base import END_OF_CHUNK_TOKEN
from flamingo_eval.models.tiny import build_tiny
from flamingo_eval.prompts import PromptOptions, build_request, demo_count, fill
from flamingo_eval.registry import TaskSpec, load_task
from flamingo_eval.sample_data import SAMPLE_TASKS, write_sample

logger = logging.getLogger("train_canary")

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSET_DIR = REPO_ROOT / "flamingo_eval" / "models" / "assets" / "canary"
# Relative share of each task in the training sequences. The scored tasks get more.
TASK_WEIGHTS = {
    "okvqa": 3.0,
    "vqav2": 3.0,
    "textvqa": 1.0,
    "vizwiz": 1.0,
    "coco": 1.5,
    "flickr30k": 1.0,
    "imagenet": 4.0,
    "hateful_memes": 2.0,
}
# Seeds of the sample suites whose train splits are trained on. One suite has 256 train items
# per task (300 for ImageNet). Trained on seed 0 alone, the model fit its training data
# (OK-VQA and VQAv2 loss near 0.02) but scored 47 on the VQAv2 sample's val split.
SAMPLE_SEEDS = tuple(range(16))
# canary-early is saved after this step. By step 100 the model has learned the questions'
# answer priors (36 OK-VQA accuracy at 4 shots in an earlier run, where the final model scored
# 50), and `flamingo-eval compare` did not find that gap significant on 64 questions. At step 60
# it still predicts a few frequent answers for every question.
EARLY_STEP = 60
# Shot counts of the training sequences and their relative weights.
SHOT_WEIGHTS = {0: 1, 1: 1, 2: 2, 3: 1, 4: 3, 5: 1, 6: 1, 8: 2, 12: 0.3}
# Every training image is also seen shifted by SHIFT pixels in each direction (edges
# replicated), so the perceiver learns shapes that do not depend on where the vision tower's
# 8-pixel patch grid cuts them. Shifts this small never move a shape to another grid cell, so no
# answer or caption changes.
SHIFT = 3
SHIFT_OFFSETS = (0, SHIFT, 2 * SHIFT)  # crop offsets into the padded image: -3, 0 and +3 pixels


@dataclass
class TrainImage:
    """One distinct train image: its preprocessed pixels (C, H, W) and, once computed, the frozen
    vision tower's patch tokens for each shifted copy, shape (len(SHIFT_OFFSETS) ** 2, tokens, width)."""

    pixels: torch.Tensor | None
    features: torch.Tensor | None = None


@dataclass(frozen=True)
class TrainItem:
    """One train example with its image and its answer texts.

    `shown_answer` is what the demo template puts after the query template, for example
    "red<|endofchunk|>". `trained_answer` is what the model learns to generate after the query; it
    differs only where OK-VQA shows a stemmed answer (see `trained_answer`).
    """

    example: Example
    image: TrainImage
    shown_answer: str
    trained_answer: str


@dataclass(frozen=True)
class TaskData:
    task: TaskSpec
    items: list[TrainItem]


def trained_answer(shown_answer: str, example: Example) -> str:
    """Return the unstemmed answer where the annotation keeps one ("raw_answer"), else `shown_answer`.

    OK-VQA v1.1 stores stemmed answers ("circle" for "circles"), and its demonstrations show
    them. VQAv2 asks the same questions in the same prompt and expects "circles". The harness
    stems OK-VQA predictions before scoring, so generating the unstemmed answer is right for both.
    """
    records = example.target if isinstance(example.target, list) else []
    raw = records[0].get("raw_answer") if records and isinstance(records[0], dict) else None
    if raw is None or example.fields.get("answer") == raw:
        return shown_answer
    return shown_answer.replace(example.fields["answer"], raw, 1)


def answer_text(task: TaskSpec, example: Example) -> str:
    """Return the text the demo template adds after the query template: answer and end of chunk.

    For the built-in templates the demo is the query followed by the answer field and
    `<|endofchunk|>`, so the answer trained is exactly what a demonstration shows.
    """
    demo = fill(task.prompt.demo, example, "demo")
    query = fill(task.prompt.query, example, "query")
    if not demo.startswith(query) or not demo.endswith(END_OF_CHUNK_TOKEN):
        raise ValueError(f"task {task.name}: the demo template does not extend the query template")
    return demo[len(query) :]


def shifted_copy(pixels: torch.Tensor, shift_index: int) -> torch.Tensor:
    """Return one preprocessed image (C, H, W) moved by one of the len(SHIFT_OFFSETS) ** 2 shifts.

    Index 4 is the unshifted image. Edges are replicated.
    """
    height, width = pixels.shape[1:]
    top = SHIFT_OFFSETS[shift_index // len(SHIFT_OFFSETS)]
    left = SHIFT_OFFSETS[shift_index % len(SHIFT_OFFSETS)]
    padded = torch.nn.functional.pad(pixels[None], [SHIFT] * 4, mode="replicate")[0]
    return padded[:, top : top + height, left : left + width]


@torch.no_grad()
def compute_features(model: torch.nn.Module, images: list[TrainImage], batch_size: int = 64) -> None:
    """Run the frozen vision tower on every shifted copy of each image and store its patch tokens:
    what `Flamingo._encode_vision_x` computes before the perceiver."""
    shifts = len(SHIFT_OFFSETS) ** 2
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        copies = torch.stack(
            [shifted_copy(image.pixels, index) for image in chunk for index in range(shifts)]
        )
        tokens = model.vision_encoder(copies)[1]
        for offset, image in enumerate(chunk):
            image.features = tokens[offset * shifts : (offset + 1) * shifts].clone()
            image.pixels = None  # The pixels are not needed again, and take 1.5 GB with 16 suites.


def load_training_data(
    data_root: Path, image_processor, sample_seeds: list[int]
) -> dict[str, TaskData]:
    """Write the sample suite into `data_root` once per seed, then load and preprocess every
    task's train (demo) split.

    Only train splits are read. The harness's sample data, and so every score in
    docs/benchmarks/canary.md, comes from seed 0. Its val and test splits are never trained on.
    """
    items_per_task: dict[str, list[TrainItem]] = {name: [] for name in SAMPLE_TASKS}
    tasks = {name: load_task(name) for name in SAMPLE_TASKS}
    for seed in sample_seeds:
        for name, task in tasks.items():
            folder = write_sample(name, data_root / f"seed{seed}" / name, seed=seed)
            examples = data_loading.load_split(task, task.data.demo_split, folder)
            # Image keys repeat across seeds (ImageNet file names, for one), so one map per split.
            images: dict[str, TrainImage] = {}
            for example in examples:
                key = example.image.key
                if key not in images:
                    images[key] = TrainImage(image_processor(example.image.open()))
                shown_answer = answer_text(task, example)
                trained = trained_answer(shown_answer, example)
                items_per_task[name].append(TrainItem(example, images[key], shown_answer, trained))
            logger.info("seed %d, %s: %d train examples, %d images",
                        seed, name, len(examples), len(images))
    return {name: TaskData(tasks[name], items) for name, items in items_per_task.items()}


@dataclass
class Sequence:
    input_ids: list[int]
    labels: list[int]
    images: list[TrainImage]  # in prompt order


def build_sequence(
    task_data: TaskData, query_index: int, demo_indices: list[int], shots: int, tokenizer
) -> Sequence:
    """Tokenize one harness request plus its answer; label the answers, -100 elsewhere.

    The prompt is tokenized on its own and the answer appended as separate tokens, as the
    harness sees it: generation continues from the prompt's tokens and ranking appends the
    class name's tokens to them. Image demonstrations' answers are labelled through the
    tokenizer's character offsets, except stemmed OK-VQA answers (see `trained_answer`).
    """
    task = task_data.task
    query = task_data.items[query_index]
    demos = [task_data.items[index] for index in demo_indices]
    request = build_request(task.prompt, query.example, [demo.example for demo in demos], shots)
    encoded = tokenizer(request.prompt, return_offsets_mapping=True)
    prompt_ids = encoded["input_ids"]
    labels = [-100] * len(prompt_ids)
    if shots > 0:
        spans = []
        position = 0
        for demo in demos:
            demo_text = fill(task.prompt.demo, demo.example, "demo")
            if demo.shown_answer == demo.trained_answer:
                answer_start = position + len(demo_text) - len(demo.shown_answer)
                spans.append((answer_start, position + len(demo_text)))
            position += len(demo_text) + len(task.prompt.separator)
        span_index = 0
        for token_index, (start, end) in enumerate(encoded["offset_mapping"]):
            while span_index < len(spans) and start >= spans[span_index][1]:
                span_index += 1
            if span_index < len(spans) and start >= spans[span_index][0] and end > start:
                labels[token_index] = prompt_ids[token_index]
    answer_ids = tokenizer(query.trained_answer, add_special_tokens=False)["input_ids"]
    images = [demo.image for demo in demos] if shots > 0 else []
    images.append(query.image)
    return Sequence(prompt_ids + answer_ids, labels + answer_ids, images)


def collate(
    sequences: list[Sequence], pad_id: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Right-pad the batch, so real tokens get positions 0, 1, ... as the harness gives them.

    Each image's shifted copy is drawn from `generator`.
    """
    length = max(len(sequence.input_ids) for sequence in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    labels = torch.full((len(sequences), length), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        size = len(sequence.input_ids)
        input_ids[row, :size] = torch.tensor(sequence.input_ids)
        labels[row, :size] = torch.tensor(sequence.labels)
        attention_mask[row, :size] = 1
    batch_size, num_images = len(sequences), len(sequences[0].images)
    shift = torch.randint(0, len(SHIFT_OFFSETS) ** 2, (batch_size, num_images), generator=generator)
    features = torch.stack(
        [torch.stack([image.features for image in sequence.images]) for sequence in sequences]
    )
    chosen = features[torch.arange(batch_size)[:, None], torch.arange(num_images)[None], shift]
    return {
        "vision_tokens": chosen[:, :, None],  # (B, T_img, F=1, tokens, width)
        "lang_x": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
    }


class BatchSampler:
    """Draws batches of training sequences from a seeded generator."""

    def __init__(self, tasks: dict[str, TaskData], tokenizer, seed: int):
        self.tasks = tasks
        self.tokenizer = tokenizer
        self.rng = random.Random(seed)
        self.task_names = list(tasks)
        self.task_weights = [TASK_WEIGHTS[name] for name in self.task_names]
        self.shot_values = list(SHOT_WEIGHTS)
        self.shot_weights = list(SHOT_WEIGHTS.values())
        self.prompt_options = PromptOptions()
        self.shift_generator = torch.Generator().manual_seed(seed)

    def batch(self, size: int) -> tuple[str, dict[str, torch.Tensor]]:
        """Draw `size` sequences of one task and one shot count, so little padding is needed."""
        shots = self.rng.choices(self.shot_values, weights=self.shot_weights)[0]
        count = demo_count(shots, self.prompt_options)
        name = self.rng.choices(self.task_names, weights=self.task_weights)[0]
        task_data = self.tasks[name]
        sequences = []
        for _ in range(size):
            indices = self.rng.sample(range(len(task_data.items)), count + 1)
            sequences.append(
                build_sequence(task_data, indices[0], indices[1:], shots, self.tokenizer)
            )
        return name, collate(sequences, self.tokenizer.pad_token_id, self.shift_generator)


def flamingo_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Compute `Flamingo.forward(vision_x, lang_x, attention_mask, labels).loss` from stored
    vision tower outputs.

    `Flamingo.forward` runs the vision tower under `torch.no_grad()` and then the perceiver,
    conditions every decoder layer on the perceiver's output and runs the language model. This
    function does the same, starting from the tower's stored tokens.
    """
    media = model.perceiver(batch["vision_tokens"])
    lang_encoder = model.lang_encoder
    for layer in lang_encoder._get_decoder_layers():
        layer.condition_vis_x(media)
    try:
        output = lang_encoder(
            input_ids=batch["lang_x"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        )
    finally:
        lang_encoder.clear_conditioned_layers()
    return output.loss


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """Save the full state dict in fp32.

    The Flamingo LM keeps its decoder blocks under two names (`old_decoder_blocks` and the
    wrapped layers), and safetensors refuses shared storage, so every tensor is copied.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().float().contiguous().clone() for name, tensor in model.state_dict().items()}
    # One metadata entry only: safetensors stores metadata in a hash map, so with several
    # entries their order in the file, and the file's bytes, can change between runs.
    save_file(state, str(path), metadata={"format": "pt"})
    logger.info("saved %s (%.1f MB)", path, path.stat().st_size / 1e6)


def train(args: argparse.Namespace) -> None:
    started = time.monotonic()
    cpu_started = time.process_time()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    model, image_processor, tokenizer = build_tiny()
    with tempfile.TemporaryDirectory(prefix="canary-data-") as data_root:
        tasks = load_training_data(Path(data_root), image_processor, args.sample_seeds)
    images = {id(item.image): item.image for task in tasks.values() for item in task.items}
    compute_features(model, list(images.values()))
    sampler = BatchSampler(tasks, tokenizer, args.seed)
    logger.info(
        "data and vision features of %d images ready after %.0f s", len(images), time.monotonic() - started
    )

    model.requires_grad_(True)
    model.vision_encoder.requires_grad_(False)
    model.train()
    trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(
        trained, lr=args.lr, betas=(0.9, 0.98), weight_decay=args.weight_decay
    )
    warmup = min(args.warmup, args.steps // 2)
    running_loss: dict[str, float] = {}
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, warmup)
        task_name, batch = sampler.batch(args.batch_size)
        loss = flamingo_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        previous = running_loss.get(task_name, loss.item())
        running_loss[task_name] = 0.9 * previous + 0.1 * loss.item()
        if (step + 1) % args.log_every == 0:
            losses = " ".join(f"{name} {value:.3f}" for name, value in sorted(running_loss.items()))
            logger.info(
                "step %d/%d lr %.2e elapsed %.0f s, smoothed loss per task: %s",
                step + 1, args.steps, optimizer.param_groups[0]["lr"],
                time.monotonic() - started, losses,
            )
        if step + 1 == args.early_step:
            save_checkpoint(model, args.out_dir / "canary-early.safetensors")
        if step + 1 in args.extra_checkpoints:
            save_checkpoint(model, args.out_dir / f"canary-step{step + 1}.safetensors")
    save_checkpoint(model, args.out_dir / "canary.safetensors")
    elapsed = time.monotonic() - started
    cpu_time = time.process_time() - cpu_started
    print(
        f"training wall time: {elapsed:.1f} s, CPU time {cpu_time:.1f} s "
        f"({args.steps} steps of {args.batch_size} sequences, {args.threads} torch threads)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--steps", type=int, default=4000, help="optimizer steps (default: 4000)")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per step (default: 16)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (default: 3e-3)")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default: 0.01)")
    parser.add_argument("--warmup", type=int, default=60, help="linear warmup steps (default: 60)")
    parser.add_argument(
        "--early-step", type=int, default=EARLY_STEP,
        help="step after which canary-early.safetensors is written (default: 60)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling and initialisation (default: 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    parser.add_argument("--log-every", type=int, default=200, help="steps between loss log lines (default: 200)")
    parser.add_argument(
        "--sample-seeds", type=lambda text: [int(part) for part in text.split(",")],
        default=list(SAMPLE_SEEDS),
        help="comma-separated seeds of the sample suites whose train splits are trained on (default: 0 to 15)",
    )
    parser.add_argument(
        "--extra-checkpoints", type=lambda text: {int(part) for part in text.split(",")}, default=set(),
        help="comma-separated steps after which to also write canary-step<N>.safetensors",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=ASSET_DIR,
        help="folder for canary-early.safetensors and canary.safetensors (default: the package's assets)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(parse_args())
