"""Prometheus metrics: requests and latency per route, and what index is served.

With several uvicorn workers, ``recsys serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
directory before the workers start; every worker then writes its samples there and ``/metrics``
(answered by any worker) aggregates all of them. Gauges are per process (``liveall``: one series
per worker pid), since each worker loads the index on its own. The parent marks every worker that
exits (crashed, killed, restarted or stopped) dead (:class:`WorkerReaper`), so its gauges leave
``/metrics`` while its counters keep counting in the totals.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from serving.state import ServingState

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "recsys_http_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "recsys_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["route"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0),
)
INDEX_INFO = Gauge(
    "recsys_index_info",
    "1 for the index version (and its model version) this worker serves.",
    ["index_version", "model_version"],
    multiprocess_mode="liveall",
)
INDEX_VECTORS = Gauge(
    "recsys_index_vectors",
    "Vectors in the served index.",
    multiprocess_mode="liveall",
)
CATALOG_VIDEOS = Gauge(
    "recsys_catalog_videos",
    "Catalog rows held in memory for responses.",
    multiprocess_mode="liveall",
)
INDEX_LOAD_SECONDS = Gauge(
    "recsys_index_load_seconds",
    "Seconds the last index swap took (index, metadata, modality vectors).",
    multiprocess_mode="liveall",
)
INDEX_SWAPS = Counter("recsys_index_swaps_total", "Index versions loaded and swapped in.")
INDEX_LOAD_FAILURES = Counter(
    "recsys_index_load_failures_total", "Attempts to load a published index that failed."
)


def record_swap(old: ServingState | None, new: ServingState, seconds: float) -> None:
    if old is not None:
        INDEX_INFO.labels(old.index_version, old.model_version).set(0)
    INDEX_INFO.labels(new.index_version, new.model_version).set(1)
    INDEX_VECTORS.set(new.ntotal)
    CATALOG_VIDEOS.set(len(new.catalog))
    INDEX_LOAD_SECONDS.set(seconds)
    INDEX_SWAPS.inc()


def render() -> tuple[bytes, str]:
    """The exposition text of this process, or of all workers in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def clear_multiprocess_dir(directory: str | Path) -> int:
    """Remove the sample files of an earlier run from a multiprocess directory (as
    prometheus_client requires before workers start); the number removed."""
    removed = 0
    for path in Path(directory).glob("*.db"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]*_(\d+)\.db")


def reap_dead_workers(
    alive: Iterable[int | None], directory: str | Path | None = None
) -> list[int]:
    """Mark every process with live-gauge files in the multiprocess directory that is not in
    ``alive`` (nor this process) dead: its gauges leave ``/metrics``, its counters and
    histograms stay in the totals. The supervisor calls it after each worker check, so a
    worker that crashed, was killed, restarted or stopped is dropped within a check; nothing
    to do outside multiprocess mode. Returns the pids marked."""
    directory = directory or os.environ.get(MULTIPROC_ENV)
    if not directory:
        return []
    from prometheus_client import multiprocess

    keep = {pid for pid in alive if pid} | {os.getpid()}
    try:
        names = [entry.name for entry in os.scandir(directory)]
    except OSError as error:
        log.warning("cannot read the metrics directory %s: %s", directory, error)
        return []
    found = {int(m.group(1)) for name in names if (m := _LIVE_GAUGE_FILE.fullmatch(name))}
    gone = sorted(found - keep)
    for pid in gone:
        try:
            multiprocess.mark_process_dead(pid, str(directory))
        except OSError as error:
            log.warning("cannot drop the metrics of exited worker %d: %s", pid, error)
        else:
            log.info("worker %d is gone; its live gauges are dropped from /metrics", pid)
    return gone


_CHILDREN: dict[tuple[str, str, str], tuple[Any, Any]] = {}
"""Labelled series by (route template, method, status): labels() costs more than the
observation itself."""


def record(template: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency under its route template."""
    key = (template, method, str(status))
    children = _CHILDREN.get(key)
    if children is None:
        children = (REQUESTS.labels(*key), LATENCY.labels(template))
        _CHILDREN[key] = children
    children[0].inc()
    children[1].observe(seconds)


class MetricsMiddleware:
    """Pure ASGI middleware (no per-request task overhead) labelling by route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            # The template without converters: "/similar/{video_id}", not "{video_id:path}".
            template = (
                getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            )
            record(template, scope["method"], status, time.perf_counter() - start)
