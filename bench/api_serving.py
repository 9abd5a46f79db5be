"""Serving benchmark: end-to-end HTTP latency, throughput and recall of ``GET /similar``, against
the same queries on the same vectors served by LanceDB (IVF-Flat, the same algorithm as ours).

For each size: seeded clustered 256-d vectors (``recsys.synth.vectors.SyntheticVectors``, as
in the index tests and ``bench/faiss_index.py``) are written straight into a fresh home through
the library (videos rows, a model version, the embedding store), an index is built and
published by ``index.build.build_index`` (the same path as ``recsys index build``), and a real
``recsys serve --workers 2`` answers ``wrk`` (1 thread, 8 connections, random ids, k=10). The
peer gets the same vectors in a LanceDB table with an IVF_FLAT index tuned to at least our
recall, behind an equally thin FastAPI app on 2 uvicorn workers (uvloop + httptools), loaded by
the same ``wrk`` script. recall@10 is measured through HTTP for both against exact search
(the query video itself excluded), with the tie-tolerant measure of the index recall gate
(``index.evaluate.recall_at_k``).

    .venv/bin/python bench/api_serving.py --sizes 100000            # a few minutes
    .venv/bin/python bench/api_serving.py --sizes 100000,1000000    # ~30 min on 2 busy cores

Prints one JSON document. Goal (2 cores, 8 clients, 2 workers, at 1M): /similar p99 ≤ 20 ms
(≤ 5 ms target), ≥ 4,000 req/s, ≥ 2x the peer's throughput at equal or better recall@10.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.synth.vectors import SyntheticVectors
from recsys.testing import free_port, stop_process, wait_ready

if TYPE_CHECKING:
    from index.evaluate import GroundTruth

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LANCE_LOG", "error")  # lance logs a deprecation line per query otherwise

K = 10
DIM = 256
CATEGORIES = 20
WRK_SCRIPT = """
local n = {n}
math.randomseed({seed})
request = function()
  return wrk.format("GET", string.format("{prefix}%07d?k={k}", math.random(0, n - 1)))
end
"""


def external_id(i: int) -> str:
    return f"vid{i:07d}"


# --------------------------------------------------------------------------- data
def seed_home(
    home: Path, vectors: np.ndarray, log: Any, min_recall: float = 0.95
) -> dict[str, Any]:
    """Videos, a model version, the embedding store and a published index, via the library."""
    from sqlalchemy import insert, select

    from index.build import BuildOptions, build_index
    from recsys.choices import GpuMode
    from recsys.db import open_database
    from recsys.db.models import ModelVersion, Video
    from recsys.settings import load_settings
    from recsys.store import EmbeddingStore

    timings: dict[str, float] = {}
    settings = load_settings(home)
    settings.ensure_dirs()
    database = open_database(settings)
    n = vectors.shape[0]
    start = time.perf_counter()
    rng = np.random.default_rng(1)
    durations = np.asarray(rng.uniform(5, 600, size=n))
    chunk = 20_000
    with database.engine.begin() as connection:
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            connection.execute(
                insert(Video),
                [
                    {
                        "video_id": external_id(i),
                        "uri": f"/bench/{external_id(i)}.mp4",
                        "content_hash": f"{i:064x}",
                        "title": f"Benchmark video {i}",
                        "category": f"cat{i % CATEGORIES}",
                        "duration_s": float(durations[i]),
                        "status": "ready",
                        "tags": [],
                    }
                    for i in range(lo, hi)
                ],
            )
    with database.session() as session:
        rows = session.execute(select(Video.id, Video.video_id).order_by(Video.id)).all()
        internal = np.array([r.id for r in rows], dtype=np.int64)
        assert [r.video_id for r in rows[:3]] == [external_id(i) for i in range(3)]
        session.add(
            ModelVersion(
                version="bench-model",
                fusion="late",
                extractor="content",
                extractor_version="bench-1",
                dim=vectors.shape[1],
                path=str(settings.models_dir / "bench-model"),
                is_active=True,
            )
        )
    timings["catalog_rows_s"] = time.perf_counter() - start
    log(f"  {n} videos rows in {timings['catalog_rows_s']:.1f}s")
    start = time.perf_counter()
    store = EmbeddingStore(settings)
    for lo in range(0, n, 100_000):
        hi = min(lo + 100_000, n)
        with database.session() as session:
            store.write_batch(
                session,
                "bench-model",
                internal[lo:hi],
                [f"{i:064x}" for i in range(lo, hi)],
                "bench-1",
                vectors[lo:hi],
            )
    timings["embedding_store_s"] = time.perf_counter() - start
    log(f"  embedding store in {timings['embedding_store_s']:.1f}s")
    start = time.perf_counter()
    result = build_index(settings, database, BuildOptions(gpu=GpuMode.OFF, min_recall=min_recall))
    timings["index_build_s"] = time.perf_counter() - start
    log(
        f"  index {result.factory} recall {result.recall_at_10:.3f} "
        f"in {timings['index_build_s']:.1f}s"
    )
    database.dispose()
    return {
        **timings,
        "factory": result.factory,
        "index_recall_at_10": result.recall_at_10,
        "search_params": result.search_params,
    }


# --------------------------------------------------------------------------- load
def parse_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def run_wrk(base: str, n: int, duration: int, connections: int, prefix: str) -> dict[str, Any]:
    """wrk (1 thread) with a Lua script that asks for random ids; parsed figures."""
    return run_wrk_script(
        base, WRK_SCRIPT.format(n=n, seed=7, prefix=prefix, k=K), duration, connections
    )


def run_wrk_script(base: str, lua: str, duration: int, connections: int) -> dict[str, Any]:
    """wrk (1 thread) driven by the Lua script ``lua``: a 3 s warm-up (page faults, connection
    setup), then the measured run; its figures parsed."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(lua)
        script = handle.name
    try:
        subprocess.run(
            ["wrk", "-t1", f"-c{connections}", "-d3s", "-s", script, base],
            capture_output=True,
            check=True,
        )
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script, base],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script)
    percentiles = {
        m.group(1): parse_ms(m.group(2))
        for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M)
    }
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)$", out, re.M)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": percentiles.get("50"),
        "p90_ms": percentiles.get("90"),
        "p99_ms": percentiles.get("99"),
        "requests": requests,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else None,
        "connections": connections,
        "duration_s": duration,
    }


def exact_truth(vectors: np.ndarray, queries: np.ndarray) -> GroundTruth:
    """Exact neighbours of each query video among the others (the API never returns the query
    itself), for the tie-tolerant recall@10 of ``index.evaluate`` (the index gate's measure)."""
    from index.evaluate import GroundTruth, exact_ground_truth

    full = exact_ground_truth(vectors, np.arange(vectors.shape[0]), vectors[queries], K + 1)
    keep = np.ones(full.ids.shape, dtype=bool)
    for row, query in enumerate(queries):
        own = np.flatnonzero(full.ids[row] == query)
        keep[row, own[0] if own.size else -1] = False  # the query, else the deepest result
    depth = full.ids.shape[1] - 1
    return GroundTruth(
        queries=full.queries,
        scores=full.scores[keep].reshape(-1, depth),
        ids=full.ids[keep].reshape(-1, depth),
        k=K,
    )


def first_queries(truth: GroundTruth, count: int) -> GroundTruth:
    from index.evaluate import GroundTruth

    return GroundTruth(truth.queries[:count], truth.scores[:count], truth.ids[:count], truth.k)


def recall(truth: GroundTruth, results: list[list[int]]) -> float:
    """recall@10 of each query's returned rows (positions), as ``recsys index build`` gates it."""
    from index.evaluate import recall_at_k

    found = np.full((len(results), K), -1, dtype=np.int64)
    for row, got in enumerate(results):
        found[row, : min(K, len(got))] = got[:K]
    return recall_at_k(truth, found)


def http_recall(base: str, prefix: str, queries: np.ndarray, truth: GroundTruth) -> float:
    import httpx

    results = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for q in queries:
            body = client.get(f"{prefix}{external_id(int(q))}", params={"k": K}).json()
            results.append([int(item["video_id"][3:]) for item in body["results"]])
    return recall(truth, results)


# --------------------------------------------------------------------------- the peer
def peer_app():  # type: ignore[no-untyped-def]
    """LanceDB behind the thinnest FastAPI endpoint (uvicorn factory; env BENCH_PEER_DIR)."""
    import lancedb
    from fastapi import FastAPI, HTTPException

    directory = Path(os.environ["BENCH_PEER_DIR"])
    params = json.loads((directory / "params.json").read_text())
    vectors = np.load(directory / "vectors.npy", mmap_mode="r")
    table = lancedb.connect(str(directory / "lance")).open_table("videos")
    app = FastAPI()

    @app.get("/similar/{video_id}")
    def similar(video_id: str, k: int = 10) -> dict[str, Any]:
        try:
            row = int(video_id[3:])
            query = np.asarray(vectors[row], dtype=np.float32)
        except (ValueError, IndexError) as error:
            raise HTTPException(404) from error
        hits = (
            table.search(query)
            .distance_type("dot")
            .nprobes(params["nprobes"])
            .limit(k + 1)
            .select(["id", "_distance"])
            .to_arrow()
        )
        ids = hits.column("id").to_pylist()
        scores = (1.0 - np.asarray(hits.column("_distance").to_pylist())).tolist()
        results = [
            {"video_id": external_id(i), "score": s}
            for i, s in zip(ids, scores, strict=True)
            if i != row
        ][:k]
        return {"results": results}

    return app


def bare_app():  # type: ignore[no-untyped-def]
    """The ceiling: the same faiss file behind a bare endpoint, no metadata, no filters, no
    checks (uvicorn factory; env BENCH_HOME). Not a product: a yardstick for our overhead."""
    import faiss
    from fastapi import FastAPI

    from index.params import apply_search_params

    root = Path(os.environ["BENCH_HOME"]) / "indexes"
    version = (root / "CURRENT").read_text().strip()
    manifest = json.loads((root / version / "manifest.json").read_text())
    index = faiss.read_index(str(root / version / "index.faiss"))
    apply_search_params(index, manifest.get("search_params") or {})
    app = FastAPI()

    @app.get("/similar/{video_id}")
    async def similar(video_id: str, k: int = 10) -> dict[str, Any]:
        vector = index.reconstruct(int(video_id[3:]) + 1)  # internal ids start at 1
        scores, ids = index.search(vector[None], k + 1)
        return {"ids": ids[0].tolist(), "scores": scores[0].tolist()}

    return app


def uvicorn_command(factory: str, workers: int) -> list[str]:
    """A uvicorn factory from this folder (``api_serving:peer_app``) on ``workers`` workers."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        factory,
        "--factory",
        "--app-dir",
        str(Path(__file__).parent),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


@contextmanager
def running(
    command: list[str], env: dict[str, str], ready_path: str, timeout: float
) -> Iterator[tuple[str, float]]:
    """``command --port P`` in its own process group: (base URL, seconds until ready); stopped
    on the way out."""
    port = free_port()
    process = subprocess.Popen(
        [*command, "--port", str(port)], env={**os.environ, **env}, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        yield base, wait_ready(base + ready_path, process, timeout=timeout)
    finally:
        stop_process(process)


def build_peer(directory: Path, vectors: np.ndarray, nlist: int, log: Any) -> float:
    import lancedb
    import pyarrow as pa

    start = time.perf_counter()
    n, dim = vectors.shape
    flat = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)
    table = lancedb.connect(str(directory / "lance")).create_table(
        "videos",
        data=pa.table({"id": pa.array(np.arange(n, dtype=np.int64)), "vector": flat}),
        mode="overwrite",
    )
    table.create_index(
        metric="dot", vector_column_name="vector", index_type="IVF_FLAT", num_partitions=nlist
    )
    np.save(directory / "vectors.npy", vectors)
    seconds = time.perf_counter() - start
    log(f"  LanceDB IVF_FLAT({nlist}) built in {seconds:.1f}s")
    return seconds


def tune_peer(
    directory: Path,
    vectors: np.ndarray,
    queries: np.ndarray,
    truth: GroundTruth,
    target: float,
    log: Any,
) -> tuple[int, float, float]:
    """Smallest nprobes whose in-process recall@10 reaches ``target`` (or the best tried)."""
    import lancedb

    table = lancedb.connect(str(directory / "lance")).open_table("videos")
    best = (0, 0.0, 0.0)
    for nprobes in (1, 2, 4, 8, 16, 32, 64, 128):
        results, start = [], time.perf_counter()
        for q in queries:
            query = table.search(vectors[q])  # a vector query: LanceVectorQueryBuilder
            got = query.distance_type("dot").nprobes(nprobes).limit(K + 1)  # type: ignore[attr-defined]
            ids = got.select(["id", "_distance"]).to_arrow().column("id").to_pylist()
            results.append([i for i in ids if i != q])
        per_query_ms = (time.perf_counter() - start) * 1000 / len(queries)
        reached = recall(truth, results)
        log(f"  LanceDB nprobes {nprobes}: recall {reached:.3f}, {per_query_ms:.2f} ms/query")
        best = (nprobes, reached, per_query_ms)
        if reached >= target:
            break
    return best


# --------------------------------------------------------------------------- driver
def bench_api(
    home: Path, n: int, queries: np.ndarray, truth: GroundTruth, args: argparse.Namespace, log: Any
) -> dict[str, Any]:
    """A real ``recsys serve``: startup time, recall@10 through HTTP, and ``wrk`` load."""
    command = [str(Path(sys.executable).with_name("recsys")), "serve", "--home", str(home)]
    command += ["--workers", str(args.workers), "--log-level", "warning"]
    out: dict[str, Any] = {}
    with running(command, {"RECSYS_HOME": str(home)}, "/readyz", 900) as (base, startup_s):
        out["api_startup_s"] = startup_s
        log(f"  recsys serve ready in {startup_s:.1f}s")
        out["api_recall_at_10"] = http_recall(base, "/similar/", queries, truth)
        out["api"] = run_wrk(base, n, args.duration, args.connections, "/similar/vid")
        log(f"  api: {out['api']}")
    return out


def bench_bare(home: Path, n: int, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """The ceiling: the same faiss file behind a bare FastAPI endpoint."""
    command = uvicorn_command("api_serving:bare_app", args.workers)
    env = {"OMP_NUM_THREADS": "1", "BENCH_HOME": str(home)}
    with running(command, env, "/similar/vid0000000", 300) as (base, _):
        result = run_wrk(base, n, args.duration, args.connections, "/similar/vid")
    log(f"  bare FastAPI + faiss (ceiling): {result}")
    return result


def peer_nlist(factory: str, n: int) -> int:
    """The peer's IVF list count: ours when our index is IVF, else 4 sqrt(n) (≥ 16)."""
    if factory.startswith("IVF"):
        return int(factory.split(",")[0].removeprefix("IVF") or 1024)
    return max(16, int(4 * np.sqrt(n)))


def bench_peer(
    directory: Path,
    vectors: np.ndarray,
    queries: np.ndarray,
    truth: GroundTruth,
    nlist: int,
    target_recall: float,
    args: argparse.Namespace,
    log: Any,
) -> dict[str, Any]:
    """LanceDB IVF_FLAT tuned to ``target_recall``, behind a thin FastAPI app under ``wrk``."""
    directory.mkdir()
    peer: dict[str, Any] = {"system": "lancedb", "index": f"IVF_FLAT({nlist})"}
    peer["build_s"] = build_peer(directory, vectors, nlist, log)
    tune = args.tune_queries
    nprobes, _, per_query = tune_peer(
        directory, vectors, queries[:tune], first_queries(truth, tune), target_recall, log
    )
    peer.update(nprobes=nprobes, in_process_ms_per_query=per_query)
    (directory / "params.json").write_text(json.dumps({"nprobes": nprobes}))
    command = uvicorn_command("api_serving:peer_app", args.workers)
    env = {"BENCH_PEER_DIR": str(directory)}
    with running(command, env, "/similar/vid0000000", 300) as (base, _):
        peer["recall_at_10"] = http_recall(base, "/similar/", queries, truth)
        peer["http"] = run_wrk(
            base,
            n=vectors.shape[0],
            duration=args.duration,
            connections=args.connections,
            prefix="/similar/vid",
        )
        log(f"  peer: {peer['http']}")
    return peer


def goals(out: dict[str, Any]) -> dict[str, Any]:
    """Throughput against the peer and the bare ceiling, and the goals met."""
    api, peer = out["api"], out["peer"]
    ratio = api["requests_per_s"] / peer["http"]["requests_per_s"]
    p99 = api["p99_ms"]
    return {
        "throughput_ratio_vs_peer": ratio,
        "throughput_share_of_bare": api["requests_per_s"]
        / out["bare_fastapi_faiss"]["requests_per_s"],
        "goals": {
            "p99_le_20ms": p99 is not None and p99 <= 20.0,
            "p99_le_5ms": p99 is not None and p99 <= 5.0,
            "ge_4000_rps": api["requests_per_s"] >= 4000,
            "ge_2x_peer": ratio >= 2.0,
            "recall_ge_peer": out["api_recall_at_10"] >= peer["recall_at_10"],
        },
    }


def bench_size(n: int, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    work = Path(args.workdir) / f"n{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    home = work / "home"
    log(f"size {n}: generating vectors")
    vectors = SyntheticVectors(DIM, n, seed=args.seed).database()
    setup = seed_home(home, vectors, log, args.min_recall)
    rng = np.random.default_rng(args.seed + 5)
    queries = rng.choice(n, size=args.recall_queries, replace=False)
    truth = exact_truth(vectors, queries)
    out: dict[str, Any] = {"videos": n, "dim": DIM, "setup": setup}
    out.update(bench_api(home, n, queries, truth, args, log))
    out["bare_fastapi_faiss"] = bench_bare(home, n, args, log)
    nlist = peer_nlist(str(setup.get("factory", "")), n)
    target = out["api_recall_at_10"]
    out["peer"] = bench_peer(work / "peer", vectors, queries, truth, nlist, target, args, log)
    out.update(goals(out))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated catalog sizes")
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--recall-queries", type=int, default=300)
    parser.add_argument("--tune-queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--min-recall", type=float, default=0.99, help="recall gate of our index build"
    )
    parser.add_argument("--workdir", default=str(ROOT / "bench" / "out" / "serving"))
    parser.add_argument("--keep", action="store_true", help="keep the generated homes")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    results = [bench_size(int(s), args, log) for s in args.sizes.split(",")]
    print(
        json.dumps(
            {
                "benchmark": "serving",
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "load_average_at_end": os.getloadavg(),
                },
                "load": {
                    "tool": "wrk -t1",
                    "connections": args.connections,
                    "k": K,
                    "workers": args.workers,
                },
                "results": results,
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
