"""Index benchmark: build time, peak memory, recall@10 and latency, auto choice vs exact search.

Vectors are a seeded Gaussian mixture (``recsys.synth.vectors.SyntheticVectors``: clustered like
real embeddings), 256-d float32, L2 normalised; queries are held-out draws from the same mixture.
The auto choice goes through the same functions as ``recsys index build`` (choose → construct →
tune to the recall gate).
Prints one JSON document. Goals at 1M on 2 cores: recall@10 ≥ 0.95, single-query p99 ≤ 5 ms,
build ≤ 120 s.

    .venv/bin/python bench/faiss_index.py --sizes 100000,1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.choose import IndexChoice, choose_index
from index.construct import construct_index
from index.evaluate import exact_ground_truth, pick_queries, recall_at_k, tune_search
from index.params import current_search_params
from recsys.choices import IndexKind
from recsys.synth.vectors import SyntheticVectors

K = 10


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) so each config gets its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    rss = _status_kb("VmRSS")
    return (rss or 0) / 1024


def latency(index: faiss.Index, queries: np.ndarray) -> dict[str, float]:
    """Single-query latency on one thread (how a request is served)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.search(queries[:5], K)  # warm up
        times = np.empty(queries.shape[0])
        for i in range(queries.shape[0]):
            q = queries[i : i + 1]
            t0 = time.perf_counter_ns()
            index.search(q, K)
            times[i] = (time.perf_counter_ns() - t0) / 1e6
    finally:
        faiss.omp_set_num_threads(threads)
    return {
        "latency_ms_p50": float(np.percentile(times, 50)),
        "latency_ms_p99": float(np.percentile(times, 99)),
        "latency_queries": int(queries.shape[0]),
    }


def batch_qps(index: faiss.Index, queries: np.ndarray) -> float:
    t0 = time.perf_counter()
    index.search(queries, K)
    return queries.shape[0] / (time.perf_counter() - t0)


def run_config(
    vectors: np.ndarray,
    ids: np.ndarray,
    queries: np.ndarray,
    truth_heldout: Any,
    choice: IndexChoice,
    args: argparse.Namespace,
    exact: bool,
) -> dict[str, Any]:
    reset_peak()
    before = rss_mb()
    t0 = time.perf_counter()
    built = construct_index(vectors, ids, choice, seed=args.seed)
    tune_s = 0.0
    if not exact:
        # the build's own gate: held-out catalog vectors as queries, like `recsys index build`
        positions = pick_queries(vectors.shape[0], args.gate_queries, built.train_ids, args.seed)
        gate_truth = exact_ground_truth(vectors, ids, vectors[positions], K)
        tuned = tune_search(built.index, gate_truth, args.min_recall)
        tune_s = tuned.seconds
    build_s = time.perf_counter() - t0
    peak = peak_rss_mb()
    index = built.index
    _, found = index.search(queries[: args.recall_queries], K)
    recall = recall_at_k(truth_heldout, found)
    lat_queries = queries[: (args.exact_latency_queries if exact else args.latency_queries)]
    result = {
        "kind": "exact" if exact else "auto",
        "factory": choice.factory,
        "reason": choice.reason,
        "count": int(vectors.shape[0]),
        "dim": int(vectors.shape[1]),
        "build_s": round(build_s, 3),
        "train_s": round(built.timings.get("train_s", 0.0), 3),
        "add_s": round(built.timings.get("add_s", 0.0), 3),
        "tune_s": round(tune_s, 3),
        "search_params": current_search_params(index),
        "peak_rss_mb": round(peak, 1),
        "peak_rss_delta_mb": round(peak - before, 1),
        "estimated_index_mb": round(choice.estimated_bytes / 2**20, 1),
        "recall_at_10": round(recall, 4),
        "recall_queries": int(found.shape[0]),
        **{
            k: round(v, 4) if isinstance(v, float) else v
            for k, v in latency(index, lat_queries).items()
        },
        "batch_qps": round(
            batch_qps(index, queries[: (args.exact_batch if exact else args.batch)]), 1
        ),
        "threads": faiss.omp_get_max_threads(),
    }
    del built, index
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated counts")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--clusters", type=int, default=0, help="default: count/1000, ≥ 100")
    parser.add_argument("--memory-budget", default="4G")
    parser.add_argument("--min-recall", type=float, default=0.95)
    parser.add_argument("--gate-queries", type=int, default=1000)
    parser.add_argument("--recall-queries", type=int, default=1000)
    parser.add_argument("--latency-queries", type=int, default=2000)
    parser.add_argument("--exact-latency-queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=10000)
    parser.add_argument("--exact-batch", type=int, default=1000)
    parser.add_argument("--skip-exact", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0)),
            "loadavg_start": os.getloadavg(),
            "python": platform.python_version(),
            "faiss": faiss.__version__,
            "omp_threads": faiss.omp_get_max_threads(),
            "peak_reset": reset_peak(),
        },
        "goals_at_1m": {"recall_at_10": 0.95, "latency_ms_p99": 5.0, "build_s": 120.0},
        "results": [],
    }
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        clusters = args.clusters or max(100, size // 1000)
        t0 = time.perf_counter()
        data = SyntheticVectors(args.dim, size, clusters=clusters, seed=args.seed)
        vectors = data.database()
        ids = np.arange(size, dtype=np.int64) * 7 + 1  # non-contiguous ids, like a real catalog
        queries = data.queries(max(args.batch, args.recall_queries))
        truth = exact_ground_truth(vectors, ids, queries[: args.recall_queries], K)
        setup_s = time.perf_counter() - t0
        configs = [(choose_index(size, args.dim, args.memory_budget), False)]
        if not args.skip_exact:
            configs.append((choose_index(size, args.dim, args.memory_budget, IndexKind.FLAT), True))
        for choice, exact in configs:
            result = run_config(vectors, ids, queries, truth, choice, args, exact)
            result.update(clusters=clusters, data_setup_s=round(setup_s, 2))
            if size >= 1_000_000 and not exact:
                result["goals_met"] = {
                    "recall_at_10": result["recall_at_10"] >= 0.95,
                    "latency_ms_p99": result["latency_ms_p99"] <= 5.0,
                    "build_s": result["build_s"] <= 120.0,
                }
            report["results"].append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
        del vectors, queries, truth
    report["machine"]["loadavg_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
