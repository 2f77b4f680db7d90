"""Runner speed: the fast paths against the product's plain path, on the tiny model and on a
~100M-parameter random Flamingo with OpenFlamingo-3B's compute proportions.

Measures (see docs/benchmarks/runner.md for the latest output):
- class ranking: 1000 ImageNet class names after 8-shot prompts, batch 8;
- VQA generation: 4 and 32 shots, 3 beams, through the full runner;
- harness overhead: the share of a 4-shot tiny run's wall time spent outside model calls.

Usage: python benchmarks/runner_speed.py [--quick] [--output docs/benchmarks/runner.md]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flamingo_eval.data import load_split  # noqa: E402
from flamingo_eval.evaluate import evaluate  # noqa: E402
from flamingo_eval.models.flamingo_adapter import FlamingoModel  # noqa: E402
from flamingo_eval.models.tiny import build_tiny, tiny_tokenizer  # noqa: E402
from flamingo_eval.prompts import build_request  # noqa: E402
from flamingo_eval.registry import load_task  # noqa: E402
from flamingo_eval.runner import RunOptions  # noqa: E402
from flamingo_eval.sample_data import write_sample  # noqa: E402
from flamingo_eval.samplers import RandomSampler, draw_trial  # noqa: E402

LARGER_VISION = {
    "embed_dim": 256,
    "vision_cfg": {"image_size": 224, "layers": 8, "width": 320, "head_width": 64, "patch_size": 14},
    "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 64, "heads": 2, "layers": 1},
}
LARGER_LM = {"hidden_size": 640, "intermediate_size": 2560, "num_hidden_layers": 10, "num_attention_heads": 10}
LARGER_CROSS_ATTN_EVERY = 2


def build_larger():
    """A random Flamingo of about 100M parameters with OpenFlamingo-3B's proportions.

    Vision: ViT (8 layers, width 320) at 224 px with 14 px patches, 257 tokens an image;
    language: LLaMA (10 layers, hidden 640); cross-attention every 2 layers. A 224 px image
    costs about 5.3 GFLOPs in the vision tower and a 20-token demo about 2 GFLOPs in the LM,
    close to ViT-L/14's 156 against MPT-1B's 52 (3:1).
    """
    import json

    import open_clip
    from transformers import LlamaConfig, LlamaForCausalLM

    from flamingo_eval.models.factory import build_flamingo

    config_dir = Path(tempfile.mkdtemp())
    (config_dir / "bench-vit-100m.json").write_text(json.dumps(LARGER_VISION))
    open_clip.add_model_config(config_dir / "bench-vit-100m.json")
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    lm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer), num_key_value_heads=LARGER_LM["num_attention_heads"],
            max_position_embeddings=2048, bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            initializer_range=0.2, **LARGER_LM,
        )
    )
    model, processor, tokenizer = build_flamingo(
        vision_encoder="bench-vit-100m", vision_pretrained=None, lang_model=lm, tokenizer=tokenizer,
        cross_attn_every_n_layers=LARGER_CROSS_ATTN_EVERY,
    )
    with torch.no_grad():
        for layer in model.lang_encoder.gated_cross_attn_layers:
            if layer is not None:
                layer.attn_gate.fill_(1.0)
                layer.ff_gate.fill_(1.0)
    return model, processor, tokenizer


def adapter(config: str, fast: bool) -> FlamingoModel:
    model, processor, tokenizer = build_tiny() if config == "tiny" else build_larger()
    return FlamingoModel(model, processor, tokenizer, name=f"{config}-{'fast' if fast else 'plain'}", fast=fast)


def count_padding(model: FlamingoModel) -> dict:
    """Wrap encode_text to count padded and total prompt tokens."""
    counts = {"padded": 0, "total": 0}
    original = model.encode_text

    def counting(prompts):
        ids, mask = original(prompts)
        counts["padded"] += int((~mask).sum())
        counts["total"] += mask.numel()
        return ids, mask

    model.encode_text = counting
    return counts


def bench_generation(config: str, shots: int, items: int, data_root: Path, lines: list[str]) -> None:
    task = load_task("okvqa")
    rows = {}
    predictions = {}
    for fast in (False, True):
        model = adapter(config, fast)
        padding = count_padding(model)
        options = RunOptions(shots=[shots], seeds=[42], num_samples=items, batch_size=8,
                             length_sorted_batches=fast)
        output = Path(tempfile.mkdtemp())
        started = time.perf_counter()
        evaluate(model, [task], options, data_root=data_root, output_dir=output / "run", command=["benchmark"])
        elapsed = time.perf_counter() - started
        predictions[fast] = (output / "run" / "predictions.jsonl").read_text()
        rows[fast] = (elapsed, items / elapsed, model.images_encoded, padding["padded"] / max(1, padding["total"]))
    demo_images = distinct_images(task, data_root, shots, items)
    identical = strip_logprobs(predictions[False]) == strip_logprobs(predictions[True])
    plain, fast = rows[False], rows[True]
    lines.append(
        f"| {config} | {shots} | {items} | {plain[1]:.2f} | {fast[1]:.2f} | {fast[1] / plain[1]:.2f}x | "
        f"{plain[2]} | {fast[2]} | {demo_images} | {plain[3]:.1%} | {fast[3]:.1%} | {identical} |"
    )
    print(lines[-1], flush=True)


def strip_logprobs(text: str) -> list:
    import json

    return [
        (r["sample_id"], r["demo_ids"], r["raw_output"], r["prediction"])
        for r in map(json.loads, text.splitlines())
    ]


def distinct_images(task, data_root: Path, shots: int, items: int) -> int:
    """Number of distinct images (queries and demos) a run of `items` items at `shots` uses."""
    data_dir = data_root / task.name
    trial = draw_trial(42, load_split(task, "val", data_dir), load_split(task, "train", data_dir), items)
    sampler = RandomSampler(trial.query_set, 42)
    keys = set()
    for example in trial.eval_examples:
        keys.add(example.image.cache_key)
        if shots:
            keys.update(demo.image.cache_key for demo in sampler.demos(example, shots))
    return len(keys)


def bench_ranking(config: str, items: int, plain_classes: int, data_root: Path, lines: list[str]) -> None:
    from open_flamingo.eval.classification_utils import IMAGENET_CLASSNAMES

    task = load_task("imagenet")
    data_dir = data_root / "imagenet"
    trial = draw_trial(42, load_split(task, "val", data_dir), load_split(task, "train", data_dir), items)
    sampler = RandomSampler(trial.query_set, 42)
    requests = [build_request(task.prompt, e, sampler.demos(e, 8), 8) for e in trial.eval_examples]
    classes = list(IMAGENET_CLASSNAMES)

    fast_model = adapter(config, True)
    started = time.perf_counter()
    fast_scores = fast_model.rank(requests, classes)
    fast_time = time.perf_counter() - started

    plain_model = adapter(config, False)
    started = time.perf_counter()
    plain_scores = plain_model.rank(requests, classes[:plain_classes])
    plain_time = (time.perf_counter() - started) * len(classes) / plain_classes
    difference = max(
        abs(a - b) for plain_row, fast_row in zip(plain_scores, fast_scores) for a, b in zip(plain_row, fast_row)
    )
    lines.append(
        f"| {config} | {items} | {len(classes)} | {plain_time:.1f} (from {plain_classes} classes) | "
        f"{fast_time:.1f} | {plain_time / fast_time:.1f}x | {difference:.2e} |"
    )
    print(lines[-1], flush=True)


# Functions whose time counts as model calls in the overhead measurement. They do not nest in
# one another: the fast path encodes images and prefills the prompt before calling generate.
MODEL_CALLS = {
    ("generation/utils.py", "generate"),  # transformers' decoding loop and its forwards
    ("flamingo_adapter.py", "_prefill_once"),  # one forward over each prompt before beam search
    ("flamingo_adapter.py", "encode_images"),  # vision tower and perceiver
}


def bench_overhead(data_root: Path, lines: list[str]) -> None:
    """Measure the share of wall time outside model calls on tiny at 4 shots, from cProfile's
    cumulative times.

    An unprofiled run comes first, so that one-time costs (lazy imports, first-call
    allocations) fall outside the profiled run that is measured.
    """
    task = load_task("okvqa")
    model = adapter("tiny", True)
    options = RunOptions(shots=[4], seeds=[42], num_samples=64, batch_size=8)
    output = Path(tempfile.mkdtemp())
    evaluate(model, [task], options, data_root=data_root, output_dir=output / "warmup", command=["benchmark"])
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    evaluate(model, [task], options, data_root=data_root, output_dir=output / "run", command=["benchmark"])
    profiler.disable()
    wall = time.perf_counter() - started
    stats = pstats.Stats(profiler, stream=io.StringIO())
    model_time = 0.0
    for (filename, _, function), (_, _, _, cumulative, _) in stats.stats.items():
        if any(filename.endswith(suffix) and function == name for suffix, name in MODEL_CALLS):
            model_time += cumulative
    # Loading the data and building requests happen once per run; both count as overhead.
    outside = 1 - model_time / wall
    lines.append(f"| tiny | 4 | 64 | {wall:.2f} | {model_time:.2f} | {outside:.1%} |")
    print(lines[-1], flush=True)


def machine_lines() -> list[str]:
    import importlib.metadata as metadata

    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("torch", "transformers", "open_clip_torch", "open-flamingo")
    )
    return [
        f"- machine: {cpu}, {os.cpu_count()} cores, {memory:.1f} GiB, torch threads {torch.get_num_threads()}",
        f"- load average at start: {', '.join(f'{value:.2f}' for value in os.getloadavg())}",
        f"- python {platform.python_version()}, {versions}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer items (a smoke run)")
    parser.add_argument("--output", type=Path, help="write the Markdown report here")
    parser.add_argument("--configs", default="tiny,larger", help="comma-separated model configs to measure (default: tiny,larger)")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    data_root = Path(tempfile.mkdtemp())
    for task in ("okvqa", "imagenet"):
        write_sample(task, data_root / task)

    configs = set(args.configs.split(","))
    command = "python benchmarks/runner_speed.py" + (" --quick" if args.quick else "") + (
        f" --configs {args.configs}" if configs != {"tiny", "larger"} else "") + (
        f" --output {args.output}" if args.output else "")
    lines = ["# Runner speed benchmark", "", f"Command: `{command}`", "", *machine_lines(), ""]
    print("\n".join(lines), flush=True)

    def save() -> None:
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text("\n".join(lines) + "\n")

    ranking = ["## Class ranking: 1000 ImageNet class names, 8 shots, batch of 8 prompts", "",
               "| config | prompts | classes | plain path (s) | shared prefix (s) | speed-up | max score difference |",
               "|---|---:|---:|---:|---:|---:|---:|"]
    generation = ["", "## VQA generation through the runner: OK-VQA sample, 3 beams, batch 8", "",
                  "| config | shots | items | plain items/s | fast items/s | speed-up | images encoded (plain) | "
                  "images encoded (fast) | distinct images | padding (plain) | padding (fast) | identical predictions |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    overhead = ["", "## Harness overhead: share of wall time outside model calls (cProfile)", "",
                "| config | shots | items | wall (s) | in model calls (s) | outside model calls |",
                "|---|---:|---:|---:|---:|---:|"]
    header = list(lines)

    def assemble() -> None:
        lines[:] = header + ranking + generation + overhead

    if "tiny" in configs:
        bench_ranking("tiny", 8, 50 if args.quick else 100, data_root, ranking)
        assemble(); save()
        for shots, items in ((4, 64), (32, 32)):
            bench_generation("tiny", shots, items, data_root, generation)
            assemble(); save()
        bench_overhead(data_root, overhead)
        assemble(); save()
    if "larger" in configs:
        for shots, items in ((4, 16 if args.quick else 32), (32, 4 if args.quick else 8)):
            bench_generation("larger", shots, items, data_root, generation)
            assemble(); save()
        bench_ranking("larger", 8, 5 if args.quick else 10, data_root, ranking)
        assemble(); save()


if __name__ == "__main__":
    main()
