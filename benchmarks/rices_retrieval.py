"""Time exact top-k RICES retrieval against faiss-cpu's exact `IndexFlatIP` on the same features.

Random L2-normalised features (fixed seed) are written as a RICES feature cache. Every timed run
is a separate process that reads the cache back, so each method's peak memory is its own. The
methods alternate (ours, faiss, ours, ...) so that background load hits both alike. Finally every
query's ids are checked against a brute-force top-k (the full score row of each query).

    python benchmarks/rices_retrieval.py --output docs/benchmarks/rices.md

faiss is optional (`pip install faiss-cpu`); without it only our retrieval is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from flamingo_eval.rices.cache import CachePaths, read_feature_cache, write_feature_cache  # noqa: E402
from flamingo_eval.rices.retrieval import (  # noqa: E402
    DEFAULT_POOL_CHUNK_SIZE,
    DEFAULT_QUERY_BATCH_SIZE,
    retrieve,
)

# Two retrieved lists count as equal "ties aside" when, position by position, their float64
# cosines differ by at most this: float32 products of 768 terms round at about 1e-7.
TIE_TOLERANCE = 1e-6


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=5000, help="number of queries (default: 5000)")
    parser.add_argument("--pool", type=int, default=120_000, help="number of pool rows (default: 120000)")
    parser.add_argument("--dim", type=int, default=768, help="feature width (default: 768)")
    parser.add_argument("--k", type=int, default=32, help="neighbours per query (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="feature generator seed (default: 0)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (default: 3)")
    parser.add_argument("--query-batch-size", type=int, default=DEFAULT_QUERY_BATCH_SIZE)
    parser.add_argument("--pool-chunk-size", type=int, default=DEFAULT_POOL_CHUNK_SIZE)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch and faiss threads (default: all cores)")
    parser.add_argument("--work-dir", type=Path, help="folder for the feature cache (default: a temporary folder)")
    parser.add_argument("--skip-faiss", action="store_true", help="time only our retrieval")
    parser.add_argument("--output", type=Path, help="also write the report to this Markdown file")
    parser.add_argument("--child", choices=["ours", "faiss"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def cache_files(work_dir: Path) -> tuple[CachePaths, CachePaths]:
    pool = CachePaths(work_dir / "pool.safetensors", work_dir / "pool.json")
    queries = CachePaths(work_dir / "queries.safetensors", work_dir / "queries.json")
    return pool, queries


def random_unit_rows(rows: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """Random L2-normalised rows, generated in blocks to keep peak memory near the result's size."""
    features = torch.empty(rows, dim)
    for start in range(0, rows, 8192):
        block = features[start : start + 8192]
        block.normal_(generator=generator)
        block.div_(block.norm(dim=1, keepdim=True))
    return features


def write_features(paths: CachePaths, features: torch.Tensor, name: str, seed: int) -> None:
    ids = [f"{name}{row}" for row in range(features.shape[0])]
    manifest = {
        "format_version": 1,
        "encoder": "synthetic",
        "pretrained": None,
        "preprocess": f"torch.normal, seed {seed}, L2-normalised",
        "dataset_fingerprint": f"synthetic-{name}-{seed}",
        "item_ids": ids,
        "image_keys": ids,
        "item_rows": list(range(len(ids))),
        "dtype": "float32",
        "shape": list(features.shape),
    }
    write_feature_cache(paths, features, manifest)


def run_child(args: argparse.Namespace) -> None:
    """Load the cached features, run one method, print its timing and peak memory as JSON."""
    torch.set_num_threads(args.threads)
    pool_paths, query_paths = cache_files(args.work_dir)
    _, pool = read_feature_cache(pool_paths)
    _, queries = read_feature_cache(query_paths)
    loaded_rss = peak_rss_mib()

    cpu_start = cpu_seconds()
    if args.child == "ours":
        start = time.perf_counter()
        indices = retrieve(
            queries,
            pool,
            args.k,
            query_batch_size=args.query_batch_size,
            pool_chunk_size=args.pool_chunk_size,
        ).numpy()
        seconds = time.perf_counter() - start
    else:
        import faiss

        faiss.omp_set_num_threads(args.threads)
        index = faiss.IndexFlatIP(pool.shape[1])
        index.add(pool.numpy())
        start = time.perf_counter()
        _, indices = index.search(queries.numpy(), args.k)
        seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start

    np.save(args.work_dir / f"ids-{args.child}.npy", indices)
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": peak_rss_mib(), "loaded_rss_mib": loaded_rss}))


def cpu_seconds() -> float:
    """User plus system CPU time of this process, all threads together."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_method(args: argparse.Namespace, method: str) -> dict:
    command = [
        sys.executable, __file__, "--child", method, "--work-dir", str(args.work_dir),
        "--k", str(args.k), "--threads", str(args.threads),
        "--query-batch-size", str(args.query_batch_size),
        "--pool-chunk-size", str(args.pool_chunk_size),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare_with_brute_force(
    ids: np.ndarray, pool: torch.Tensor, queries: torch.Tensor, k: int
) -> dict[str, int]:
    """Count queries whose ids equal the brute-force top-k exactly, up to near-ties, or neither.

    Brute force takes each query's full row of scores (256 queries at a time) and `torch.topk`.
    """
    exact = 0
    near_ties = 0
    different = 0
    for start in range(0, queries.shape[0], 256):
        batch = queries[start : start + 256]
        reference = (batch @ pool.T).topk(k, dim=1).indices.numpy()
        found = ids[start : start + 256]
        for row in range(batch.shape[0]):
            if np.array_equal(found[row], reference[row]):
                exact += 1
                continue
            query = batch[row].double()
            found_scores = pool[torch.from_numpy(found[row])].double() @ query
            reference_scores = pool[torch.from_numpy(reference[row])].double() @ query
            if torch.all((found_scores - reference_scores).abs() <= TIE_TOLERANCE):
                near_ties += 1
            else:
                different += 1
    return {"exact": exact, "near_ties": near_ties, "different": different}


def machine_description() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": f"{memory_kib / 1024 ** 2:.1f} GiB",
        "load average at start (1, 5, 15 min)": ", ".join(f"{load:.2f}" for load in os.getloadavg()),
        "platform": platform.platform(),
    }


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def format_report(args, machine, timings, checks, command) -> str:
    lines = [
        "# RICES retrieval benchmark",
        "",
        "Exact top-k retrieval by inner product (cosine similarity of L2-normalised features):",
        "flamingo-eval's chunked torch retrieval next to faiss-cpu's exact `IndexFlatIP`, in the",
        "same run. Features are random, so the ids are a correctness check, not a quality measure.",
        "",
        "Command (from the repository root):",
        "",
        "```",
        command,
        "```",
        "",
        "## Configuration",
        "",
        f"- queries: {args.queries}, pool: {args.pool}, dim: {args.dim}, k: {args.k}, float32, seed {args.seed}",
        f"- query batch: {args.query_batch_size}, pool chunk: {args.pool_chunk_size}, threads: {args.threads}",
        f"- features read back from a RICES feature cache (safetensors + JSON manifest) in each timed process",
        f"- {args.repeats} timed runs per method, alternating; times exclude process start, cache "
        "loading and faiss's `index.add`",
        "",
        "## Machine and versions",
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    lines += [
        f"- python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"faiss-cpu {package_version('faiss-cpu')}, safetensors {package_version('safetensors')}",
        "",
        "## Results",
        "",
        "| method | wall time of runs (s) | median (s) | best (s) | median CPU time (s) | peak RSS (MiB) | ids vs brute force |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for method, runs in timings.items():
        seconds = [run["seconds"] for run in runs]
        cpu = statistics.median(run["cpu_seconds"] for run in runs)
        peak = max(run["peak_rss_mib"] for run in runs)
        check = checks[method]
        verdict = (
            f"{check['exact']} exact, {check['near_ties']} differ only in near-ties, "
            f"{check['different']} different"
        )
        lines.append(
            f"| {method} | {', '.join(f'{value:.2f}' for value in seconds)} | "
            f"{statistics.median(seconds):.2f} | {min(seconds):.2f} | {cpu:.2f} | {peak:.0f} | {verdict} |"
        )
    if "faiss" in timings:
        ours = statistics.median(run["seconds"] for run in timings["ours"])
        theirs = statistics.median(run["seconds"] for run in timings["faiss"])
        lines += ["", f"Median wall time of ours / faiss: {ours / theirs:.2f}."]
    lines += [
        "",
        f"Near-ties: the two id lists differ, but position by position their float64 cosines differ "
        f"by at most {TIE_TOLERANCE:g}, below float32 rounding of the scores.",
        "Peak RSS is each timed process's own `ru_maxrss`, with the imported torch and the cached "
        f"features (pool {args.pool * args.dim * 4 / 2 ** 20:.0f} MiB) included. Wall times also "
        "depend on what else runs on the cores (see the load average above).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return 0

    command = "python benchmarks/rices_retrieval.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    machine = machine_description()
    temporary = None
    if args.work_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="rices-benchmark-")
        args.work_dir = Path(temporary.name)
    args.work_dir.mkdir(parents=True, exist_ok=True)

    generator = torch.Generator().manual_seed(args.seed)
    pool = random_unit_rows(args.pool, args.dim, generator)
    queries = random_unit_rows(args.queries, args.dim, generator)
    pool_paths, query_paths = cache_files(args.work_dir)
    write_features(pool_paths, pool, "pool", args.seed)
    write_features(query_paths, queries, "query", args.seed)

    methods = ["ours"] if args.skip_faiss else ["ours", "faiss"]
    timings: dict[str, list[dict]] = {method: [] for method in methods}
    for repeat in range(args.repeats):
        for method in methods:
            timings[method].append(time_method(args, method))
            print(f"run {repeat + 1} {method}: {timings[method][-1]}", file=sys.stderr, flush=True)

    torch.set_num_threads(args.threads)
    checks = {
        method: compare_with_brute_force(
            np.load(args.work_dir / f"ids-{method}.npy"), pool, queries, args.k
        )
        for method in methods
    }
    report = format_report(args, machine, timings, checks, command)
    print(report)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report, encoding="utf-8")
    if temporary is not None:
        temporary.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
