"""Command line: `flamingo-eval [run] --task okvqa --shots 0,4,8,32` and its subcommands."""

from __future__ import annotations

import argparse
import importlib
import os
import logging
import sys
from pathlib import Path

from flamingo_eval.errors import InputError
from flamingo_eval.models.options import add_model_arguments

SUBCOMMANDS = ("run", "sample-data", "list-tasks", "cache-features", "export-hf", "compare", "report", "check")
# Subcommands that only read run folders, each a module with main(argv) -> exit code.
RUN_FOLDER_COMMANDS = ("compare", "report", "check")


def parse_int_list(text: str, option: str, minimum: int = 0) -> list[int]:
    """Parse "0,4,8" into [0, 4, 8]; raise InputError naming the option on bad input."""
    try:
        values = [int(part) for part in text.split(",") if part.strip() != ""]
    except ValueError:
        raise InputError(
            f"{option} {text!r} is not a comma-separated list of integers (example: 0,4,8)"
        ) from None
    if not values or any(value < minimum for value in values):
        raise InputError(f"{option} {text!r} must list integers >= {minimum} (example: 0,4,8)")
    if len(set(values)) != len(values):
        raise InputError(f"{option} {text!r} lists a value twice")
    return values


def check_output_folder(folder: Path | None) -> None:
    """Reject an output folder that is a file, or a non-empty folder that contains no run."""
    if folder is None or not folder.exists():
        return
    if not folder.is_dir():
        raise InputError(f"--output-dir {folder} is a file; pass a folder path")
    if any(folder.iterdir()) and not (folder / "metadata.json").is_file():
        raise InputError(
            f"--output-dir {folder} is a non-empty folder without a run's metadata.json; "
            "pass a new or empty folder"
        )


def safe_folder_name(name: str) -> str:
    """Turn a model name such as 'my.module:factory' into a folder name."""
    return "".join(character if character.isalnum() or character in "-_." else "_" for character in name)


def parse_batch_size(text: str) -> int | None:
    """Parse --batch-size: a positive integer, or 'auto' (returned as None)."""
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"--batch-size {text!r} must be a positive integer or 'auto'")
    return value


def add_rices_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rices-encoder", help="open_clip model that embeds images for RICES (default: ViT-L-14-quickgelu, OpenFlamingo's CLIP ViT-L/14; tiny-vit for the offline tiny and canary models)")
    parser.add_argument("--rices-pretrained", help="open_clip pretrained tag of the RICES encoder, or 'random' (default: openai; random for tiny-vit)")
    parser.add_argument("--feature-cache-dir", type=Path, help="folder of cached RICES image features (default: ~/.cache/flamingo-eval/features)")
    parser.add_argument("--rices-backend", choices=["torch", "faiss"], default="torch", help="exact top-k search with torch, or with faiss-cpu if installed (default: torch)")


# Models built offline get an offline RICES encoder by default: the tiny random open_clip tower.
OFFLINE_MODELS = ("tiny", "canary", "canary-early")
OFFLINE_RICES_ENCODER = ("tiny-vit", "random")
RICES_ENCODER = ("ViT-L-14-quickgelu", "openai")


def rices_options_from_args(args: argparse.Namespace):
    from flamingo_eval.rices import RicesOptions, default_feature_cache_dir, parse_pretrained

    # `flamingo-eval run` defaults to the tiny model; cache-features has no --model option.
    models = (args.model or ["tiny"]) if hasattr(args, "model") else []
    offline = bool(models) and all(model in OFFLINE_MODELS for model in models)
    default_encoder, default_pretrained = OFFLINE_RICES_ENCODER if offline else RICES_ENCODER
    encoder = args.rices_encoder or default_encoder
    if args.rices_pretrained is not None:
        pretrained = args.rices_pretrained
    elif encoder == OFFLINE_RICES_ENCODER[0]:
        pretrained = OFFLINE_RICES_ENCODER[1]
    else:
        pretrained = RICES_ENCODER[1]
    return RicesOptions(
        encoder=encoder,
        pretrained=parse_pretrained(pretrained),
        cache_dir=args.feature_cache_dir or default_feature_cache_dir(),
        device=args.device,
        backend=args.rices_backend,
    )


def command_cache_features(argv: list[str]) -> int:
    """Compute and cache RICES image features of a task's demo and eval splits."""
    from flamingo_eval.evaluate import resolve_data_dir
    from flamingo_eval.registry import load_task
    from flamingo_eval.rices import cache_task_features

    parser = argparse.ArgumentParser(
        prog="flamingo-eval cache-features",
        description="Compute the RICES image features of a task's splits ahead of a run.",
    )
    parser.add_argument("--task", action="append", required=True, help="task name or task file; repeat for several")
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="folder of the task's data, or one with a sub-folder per task (default: ./data)")
    parser.add_argument("--source", choices=["files", "hf"], default="files", help="data source (default: files)")
    parser.add_argument("--device", default="cpu", help="torch device for the encoder (default: cpu)")
    add_rices_arguments(parser)
    args = parser.parse_args(argv)
    options = rices_options_from_args(args)
    for name in args.task:
        task = load_task(name)
        for path in cache_task_features(task, resolve_data_dir(args.data_dir, task), options, source=args.source):
            print(f"{task.name}: {path}")
    return 0


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flamingo-eval",
        description=(
            "Few-shot evaluation of Flamingo-style models. Subcommands: run (the default), "
            "sample-data, list-tasks, cache-features, export-hf, compare, report, check; `flamingo-eval SUBCOMMAND --help` "
            "describes each."
        ),
    )
    parser.add_argument("--task", action="append", help="task name or task file path; repeat for several tasks")
    parser.add_argument("--list-tasks", action="store_true", help="list the registered tasks and exit")
    parser.add_argument("--shots", help="comma-separated numbers of demonstrations (default: the task's list)")
    parser.add_argument("--seeds", default="42", help="comma-separated trial seeds; one trial per seed (default: 42)")
    parser.add_argument("--num-samples", type=int, help="evaluated items per trial, drawn with the trial seed (default: all)")
    parser.add_argument("--batch-size", default="8", help="requests per model call, or 'auto' to start at 32 and halve after running out of memory (default: 8)")
    parser.add_argument(
        "--image-workers", type=int, default=0,
        help="worker processes that load and preprocess images ahead of the model; "
        "0 loads them on background threads (default: 0)",
    )
    parser.add_argument("--query-set-size", type=int, default=2048, help="train items per trial that demonstrations are drawn from (default: 2048)")
    parser.add_argument("--zero-shot-text-demos", type=int, default=2, help="text-only demonstrations shown at 0 shots (default: 2, as OpenFlamingo)")
    parser.add_argument("--sampler", choices=["random", "rices"], default="random", help="how demonstrations are chosen: random from the query set, or RICES retrieval of the most similar train images (default: random)")
    add_rices_arguments(parser)
    parser.add_argument("--demo-order", choices=["retrieved", "random"], default="retrieved", help="RICES demo order: as retrieved (most similar last) or shuffled with the trial seed (default: retrieved)")
    parser.add_argument("--prompt-ensembles", type=int, default=1, help="ranking tasks: average class scores over this many orders of the demos (OpenFlamingo's prompt ensembling uses 6; default: 1)")
    parser.add_argument("--demos-per-class", type=int, help="ranking tasks: draw demos from a support set of this many train examples per class")
    parser.add_argument("--model", action="append", help="model preset (tiny, canary, openflamingo-3b, ...) or package.module:factory; repeat to evaluate several models on the same demos and items and compare them (default: tiny)")
    add_model_arguments(parser)
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="folder of the task's data, or a folder with one sub-folder per task (default: ./data)")
    parser.add_argument("--source", choices=["files", "hf"], default="files", help="read the official file layout (files) or the task's Hugging Face datasets source (hf) (default: files)")
    parser.add_argument("--output-dir", type=Path, help="run folder to write (default: results/<timestamp>-<fingerprint>)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR, skipping finished predictions (the same command without --output-dir also resumes its newest unfinished run)")
    parser.add_argument("--dist-timeout", type=float, default=30, help="minutes a rank waits for the others in a collective before failing (default: 30)")
    parser.add_argument("--results-dir", type=Path, default=Path("results"), help="parent of new run folders (default: ./results)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    return parser


def sample_data_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flamingo-eval sample-data",
        description="Write a small deterministic sample of a task's data in its official file layout.",
    )
    parser.add_argument("task", help="task name, or 'all' for every task (DIR then gets one sub-folder per task)")
    parser.add_argument("directory", type=Path, help="folder to write into")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    return parser


def command_list_tasks() -> int:
    from flamingo_eval.registry import load_task, task_files

    rows = []
    for name in task_files():
        task = load_task(name)
        source = task.data.loader + (" | hf" if task.data.hf else "")
        rows.append((name, task.kind, ", ".join(task.metric_names), source, task.description))
    widths = [max(len(str(row[column])) for row in rows + [("task", "kind", "metrics", "data source", "description")]) for column in range(5)]
    header = ("task", "kind", "metrics", "data source", "description")
    for row in [header, *rows]:
        print("  ".join(str(value).ljust(width) for value, width in zip(row, widths)).rstrip())
    return 0


def command_sample_data(argv: list[str]) -> int:
    from flamingo_eval.sample_data import SAMPLE_TASKS, write_sample

    args = sample_data_parser().parse_args(argv)
    tasks = SAMPLE_TASKS if args.task == "all" else (args.task,)
    for task in tasks:
        directory = args.directory / task if args.task == "all" else args.directory
        path = write_sample(task, directory, seed=args.seed)
        print(f"wrote {task} sample to {path}")
    return 0


def command_run(argv: list[str]) -> int:
    args = run_parser().parse_args(argv)
    if args.list_tasks:
        return command_list_tasks()
    if not args.task:
        raise InputError("no task given; pass --task NAME (see --list-tasks)")
    batch_size = parse_batch_size(args.batch_size)
    if args.prompt_ensembles < 1:
        raise InputError(f"--prompt-ensembles {args.prompt_ensembles} must be at least 1")
    if args.demos_per_class is not None and args.demos_per_class < 1:
        raise InputError(f"--demos-per-class {args.demos_per_class} must be at least 1")
    if args.num_samples is not None and args.num_samples < 1:
        raise InputError(f"--num-samples {args.num_samples} must be at least 1")
    if args.image_workers < 0:
        raise InputError(f"--image-workers {args.image_workers} must be 0 or more")

    from flamingo_eval.distributed import init_distributed, shutdown_distributed
    from flamingo_eval.evaluate import evaluate
    from flamingo_eval.models import load_model_from_args
    from flamingo_eval.prompts import PromptOptions
    from flamingo_eval.registry import load_task
    from flamingo_eval.runner import RunOptions

    tasks = [load_task(name) for name in args.task]
    names = [task.name for task in tasks]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise InputError(
            f"--task lists task name {duplicated[0]!r} twice; give each task file a distinct 'name'"
        )
    if args.zero_shot_text_demos < 0:
        raise InputError(f"--zero-shot-text-demos {args.zero_shot_text_demos} must be 0 or more")
    if args.query_set_size < 1:
        raise InputError(f"--query-set-size {args.query_set_size} must be at least 1")

    shots = parse_int_list(args.shots, "--shots") if args.shots is not None else sorted({s for t in tasks for s in t.shots})
    options = RunOptions(
        shots=shots,
        seeds=parse_int_list(args.seeds, "--seeds"),
        num_samples=args.num_samples,
        batch_size=batch_size,
        query_set_size=args.query_set_size,
        prompt=PromptOptions(zero_shot_text_demos=args.zero_shot_text_demos),
        sampler=args.sampler,
        rices=rices_options_from_args(args) if args.sampler == "rices" else None,
        demo_order=args.demo_order,
        demos_per_class=args.demos_per_class,
        prompt_ensembles=args.prompt_ensembles,
        image_workers=args.image_workers,
    )
    if args.resume is not None and args.output_dir is not None and args.resume != args.output_dir:
        raise InputError("pass either --resume RUN_DIR or --output-dir DIR, not both")
    if args.resume is not None and not (args.resume / "metadata.json").is_file():
        raise InputError(f"--resume {args.resume}: no metadata.json there; is it a run folder?")
    models = args.model or ["tiny"]
    if len(set(models)) != len(models):
        raise InputError(f"--model lists a model twice: {', '.join(models)}")
    if len(models) > 1 and args.resume is not None:
        raise InputError("--resume takes one run folder; resume each model's run separately")
    dist_context, args.device = init_distributed(args.device, args.dist_timeout)
    run_paths = []
    try:
        for model_name in models:
            output_dir = args.resume or args.output_dir
            if output_dir is not None and len(models) > 1:
                output_dir = output_dir / safe_folder_name(model_name)
            check_output_folder(output_dir)
            model_args = argparse.Namespace(**{**vars(args), "model": model_name})
            summary, run_path = evaluate(
                lambda: load_model_from_args(model_args),
                tasks,
                options,
                data_root=args.data_dir,
                source=args.source,
                output_dir=output_dir,
                results_dir=args.results_dir,
                command=["flamingo-eval", *argv],
                dist_context=dist_context,
            )
            run_paths.append(run_path)
            if dist_context.is_main:
                print(f"\n{model_name}:\n{format_summary(summary)}")
                print(f"\nresults written to {run_path}")
        # Tear the process group down only once every rank is done with it. A rank that
        # destroyed it right after sending its predictions to rank 0 sometimes aborted in
        # gloo ("terminate called without an active exception").
        dist_context.barrier()
    finally:
        shutdown_distributed()
    if dist_context.is_main and len(run_paths) > 1:
        from flamingo_eval.compare import main as compare_main

        print()
        return compare_main([str(path) for path in run_paths])
    return 0


def format_summary(summary) -> str:
    """Render the summary as a Markdown table: one row per (task, shots, sampler, metric)."""
    lines = [
        "| task | shots | sampler | metric | mean | std | trials | samples |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for row in summary.itertuples(index=False):
        mean = "n/a" if row.mean != row.mean else f"{row.mean:.2f}"
        std = "n/a" if row.std != row.std else f"{row.std:.2f}"
        lines.append(
            f"| {row.task} | {row.shots} | {row.sampler} | {row.metric} | {mean} | {std} | "
            f"{row.num_trials} | {row.num_samples} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO if "-v" in argv or "--verbose" in argv else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if argv and argv[0] == "sample-data":
            return command_sample_data(argv[1:])
        if argv and argv[0] == "list-tasks":
            return command_list_tasks()
        if argv and argv[0] == "export-hf":
            from flamingo_eval.data import hf_export

            return hf_export.main(argv[1:])
        if argv and argv[0] == "cache-features":
            return command_cache_features(argv[1:])
        if argv and argv[0] in RUN_FOLDER_COMMANDS:
            module = importlib.import_module(f"flamingo_eval.{argv[0]}")
            return module.main(argv[1:])
        if argv and argv[0] == "run":
            argv = argv[1:]
        return command_run(argv)
    except KeyboardInterrupt:
        print(
            "flamingo-eval: interrupted; finished predictions are saved in the run folder's "
            "journal, and running the same command again resumes the run",
            file=sys.stderr,
        )
        return 130
    except InputError as error:
        rank = os.environ.get("RANK") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
        where = f" (rank {rank})" if rank is not None else ""
        print(f"flamingo-eval: error{where}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
