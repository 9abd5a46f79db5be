"""A real ``recsys serve --workers 2`` under abuse: normal ``/similar`` traffic alongside
oversized bodies, near-empty filters at large k and slow uploads (sent from another process).

The abuse is switched on and off in short slices, and normal traffic is measured in every
slice, so a machine that is busy with other work moves both sides alike. Normal traffic never
sees a 5xx and its p99 under abuse stays within 3x of its p99 without; every abusive request is
refused (413, 503 with Retry-After) or answered within its bound (200, ``partial`` or
``exhausted``), quickly. Bounded: about 20 s of traffic, under 60 s in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from recsys.db import open_database
from recsys.settings import Settings
from recsys.testing import free_port, stop_process, wait_ready
from tests.serving.catalog import build_catalog

RECSYS = Path(sys.executable).with_name("recsys")
NORMAL_CLIENTS = 2
NORMAL_RATE = 30.0  # requests a second per normal client
SLICES = 10  # alternately without and with abuse
SLICE_S = 2.0
SETTLE_S = 0.4  # after switching, before measuring
OVERSIZED_CLIENTS = 2
DEEP_CLIENTS = 6
UPLOAD_CLIENTS = 12  # more than the 2 x (1 decoding + 4 queued) uploads the workers take
MAX_DEEP_SEARCHES = 2  # small: any near-empty filter that still needs widening is shed


# ------------------------------------------------------------------ normal traffic
async def _normal_client(
    client: httpx.AsyncClient, ids: list[str], stop_at: float, rng: Any, log: list
) -> None:
    """Paced requests (``NORMAL_RATE`` a second): the normal load leaves the server room, so
    what the abuse adds shows, not a queue the normal clients build themselves."""
    next_at = time.monotonic()
    while (now := time.monotonic()) < stop_at:
        if next_at > now:
            await asyncio.sleep(next_at - now)
        next_at += 1.0 / NORMAL_RATE
        video_id = ids[int(rng.integers(len(ids)))]
        start = time.perf_counter()
        try:
            status = (await client.get(f"/similar/{video_id}", params={"k": 10})).status_code
        except httpx.HTTPError as error:
            status = repr(error)
        log.append((time.perf_counter() - start, status))


async def normal_traffic(
    client: httpx.AsyncClient, ids: list[str], seconds: float, rng: Any
) -> list:
    log: list = []
    stop_at = time.monotonic() + seconds
    await asyncio.gather(
        *(_normal_client(client, ids, stop_at, rng, log) for _ in range(NORMAL_CLIENTS))
    )
    return log


def p99_ms(log: list) -> float:
    return float(np.percentile([entry[0] for entry in log], 99) * 1000)


async def warm_uploads(client: httpx.AsyncClient) -> None:
    """Let both workers take an upload once: a worker's first upload imports torch for the
    model, seconds of CPU that must not land in a measured slice."""

    async def one() -> float:
        start = time.perf_counter()
        await client.post(
            "/similar/upload",
            files={"file": ("w.mp4", b"\x01" * 512, "video/mp4")},
            timeout=60.0,
        )
        return time.perf_counter() - start

    for _ in range(8):
        if max(await asyncio.gather(*(one() for _ in range(4)))) < 0.5:
            return


# ------------------------------------------------------------------ abuse (another process)
async def _paused(active: Any, stop_at: float) -> bool:
    """Wait while the abuse is switched off; False once it is over."""
    while not active.is_set():
        if time.monotonic() >= stop_at:
            return False
        await asyncio.sleep(0.02)
    return time.monotonic() < stop_at


async def _oversized(client: httpx.AsyncClient, active: Any, stop_at: float, out: list) -> None:
    body = b'{"positive": [' + b'"v001", ' * 12_000 + b'"v002"], "k": 5}'  # ~100 KB
    while await _paused(active, stop_at):
        start = time.perf_counter()
        try:
            response = await client.post(
                "/similar", content=body, headers={"Content-Type": "application/json"}
            )
            status: int | str = response.status_code
        except httpx.HTTPError as error:
            status = type(error).__name__
        out.append(("oversized", status, time.perf_counter() - start))
        await asyncio.sleep(0.1)


async def _deep(
    client: httpx.AsyncClient, ids: list[str], active: Any, stop_at: float, out: list
) -> None:
    # "news" and at most 7.5 s long: one video in 300 (v002); k at the maximum.
    params = {"k": 1000, "category": "news", "max_duration": 7.5}
    i = 0
    while await _paused(active, stop_at):
        i += 1
        start = time.perf_counter()
        try:
            response = await client.get(f"/similar/{ids[i % len(ids)]}", params=params)
            status: int | str = response.status_code
            if status == 200:
                body = response.json()
                status = "200-bounded" if body["partial"] or body["exhausted"] else 200
            elif status == 503 and "retry-after" not in response.headers:
                status = "503 without Retry-After"
        except httpx.HTTPError as error:
            status = type(error).__name__
        out.append(("deep", status, time.perf_counter() - start))
        await asyncio.sleep(0.1)


async def _answer(reader: asyncio.StreamReader, status_line: bytes) -> int | str:
    """The status of an HTTP answer whose status line was read; a 503 with the error code of
    its JSON body ("503-overloaded": the upload queue was full)."""
    if not status_line.startswith(b"HTTP/1.1 "):
        return repr(status_line[:40])
    status = int(status_line.split()[1])
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    headers = dict(line.split(b":", 1) for line in head.lower().split(b"\r\n") if b":" in line)
    length = int(headers.get(b"content-length", b"0"))
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    if status == 503:
        retry = b"retry-after" in headers
        return f"503-{json.loads(body)['error']}" if retry else "503 without Retry-After"
    return status


async def _slow_upload(port: int, active: Any, stop_at: float, out: list) -> None:
    """Multipart uploads trickled in (1 KB per 0.1 s, ~1 s each) on raw sockets, so an early
    answer (refused while still sending) is read, not lost in a broken pipe. An upload cut off
    when the abuse pauses is not counted."""
    boundary = "abuseboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    pieces = 10
    length = len(head) + pieces * 1024 + len(tail)
    while await _paused(active, stop_at):
        start = time.perf_counter()
        status: int | str | None = None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                f"POST /similar/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {length}\r\n\r\n".encode()
                + head
            )
            for _ in range(pieces):
                try:
                    line = await asyncio.wait_for(reader.readline(), 0.1)
                    status = await _answer(reader, line)  # answered before the body ended
                    break
                except TimeoutError:
                    if not active.is_set():
                        break
                    writer.write(b"\x01" * 1024)
                    await writer.drain()
            else:
                writer.write(tail)
                await writer.drain()
                status = await _answer(reader, await asyncio.wait_for(reader.readline(), 30))
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as error:
            status = type(error).__name__
        finally:
            writer.close()
        if status is not None:
            out.append(("upload", status, time.perf_counter() - start))
            await asyncio.sleep(0.25)  # a refused client comes back soon, not in a tight loop


def abuse(
    base: str, port: int, ids: list[str], ready: Any, active: Any, stop: Any, path: str
) -> None:
    """The abusive mix whenever ``active`` is set, until ``stop``; results as JSON at ``path``."""
    out: list = []

    async def run() -> None:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=base, timeout=10.0, limits=limits) as client:
            ready.set()
            stop_at = time.monotonic() + 120  # a safety net; ``stop`` ends it
            watcher = asyncio.create_task(asyncio.to_thread(stop.wait, 120))
            abusers = asyncio.gather(
                *(_oversized(client, active, stop_at, out) for _ in range(OVERSIZED_CLIENTS)),
                *(
                    _deep(client, ids[i::DEEP_CLIENTS], active, stop_at, out)
                    for i in range(DEEP_CLIENTS)
                ),
                *(_slow_upload(port, active, stop_at, out) for _ in range(UPLOAD_CLIENTS)),
            )
            await asyncio.wait([watcher, abusers], return_when=asyncio.FIRST_COMPLETED)
            abusers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await abusers

    asyncio.run(run())
    Path(path).write_text(json.dumps(out))


# ------------------------------------------------------------------ the test
@pytest.mark.slow
def test_abuse_is_refused_while_normal_traffic_keeps_its_latency(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    settings = sqlite_settings
    database = open_database(settings)
    catalog = build_catalog(settings, database, n=300)
    database.dispose()
    ids = list(catalog.served)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "RECSYS_HOME": str(settings.home),
        "RECSYS_API_MAX_DEEP_SEARCHES": str(MAX_DEEP_SEARCHES),
    }
    server_log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [str(RECSYS), "serve", "--home", str(settings.home), "--port", str(port)]
        + ["--workers", "2", "--log-level", "warning"],
        env=env,
        stdout=server_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    context = multiprocessing.get_context("spawn")
    ready, active, stop = context.Event(), context.Event(), context.Event()
    results = tmp_path / "abuse.json"
    abuser = context.Process(
        target=abuse, args=(base, port, ids, ready, active, stop, str(results)), daemon=True
    )
    quiet: list = []
    loaded: list = []

    async def scenario() -> httpx.Response:
        rng = np.random.default_rng(0)
        async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
            await warm_uploads(client)
            await normal_traffic(client, ids, 1.0, rng)  # warm-up: connections, caches
            for i in range(SLICES):
                (active.set if i % 2 else active.clear)()
                await asyncio.sleep(SETTLE_S)
                (loaded if i % 2 else quiet).extend(await normal_traffic(client, ids, SLICE_S, rng))
            active.clear()
            return await client.get("/readyz")

    began = time.monotonic()
    try:
        wait_ready(base + "/readyz", process, timeout=60, interval=0.2)
        started = time.monotonic() - began
        abuser.start()
        assert ready.wait(30), "the abuse process did not start"
        health = asyncio.run(scenario())
        stop.set()
        abuser.join(timeout=30)
    finally:
        stop.set()
        if abuser.is_alive():
            abuser.kill()
        stop_process(process)
        server_log.close()
    output = (tmp_path / "server.log").read_text(errors="replace")
    assert abuser.exitcode == 0, output[-3000:]
    abusive = json.loads(results.read_text())
    by_kind: dict[str, Counter] = {}
    for kind, status, _ in abusive:
        by_kind.setdefault(kind, Counter())[status] += 1
    refusals = [s for _, status, s in abusive if status in (413, 503, "503-overloaded")]
    print(
        f"\nnormal /similar: p99 {p99_ms(quiet):.2f} ms alone ({len(quiet)} requests), "
        f"{p99_ms(loaded):.2f} ms under abuse ({len(loaded)}); abusive: "
        + ", ".join(f"{kind} {dict(counts)}" for kind, counts in sorted(by_kind.items()))
        + f"; refusals p99 {np.percentile(refusals, 99) * 1000:.1f} ms; server ready after "
        f"{started:.1f} s, all done after {time.monotonic() - began:.1f} s"
    )
    # Normal traffic: every request answered, no 5xx, its latency kept.
    for log in (quiet, loaded):
        assert {status for _, status in log} == {200}, Counter(s for _, s in log)
    assert p99_ms(loaded) <= 3 * p99_ms(quiet), (p99_ms(loaded), p99_ms(quiet))
    assert health.status_code == 200
    # Abuse: refused or bounded, never a 500, never a dropped connection.
    assert set(by_kind["oversized"]) == {413}, by_kind["oversized"]
    assert set(by_kind["deep"]) <= {"200-bounded", 503}, by_kind["deep"]
    # A near-empty filter runs inside the index (faiss ID selectors), so it is answered in one
    # shallow round instead of a deep widening the cap would shed (the cap itself:
    # tests/api/test_bounds.py). Either way it is answered or refused within its bound.
    deep_seconds = [s for kind, _, s in abusive if kind == "deep"]
    assert np.percentile(deep_seconds, 50) < 0.1, np.percentile(deep_seconds, 50)
    assert np.percentile(deep_seconds, 99) < 2.0, np.percentile(deep_seconds, 99)
    # An upload the queue takes is decoded (this catalog's model has no files, so its answer
    # is 503 "unavailable"); one more is refused at once ("overloaded").
    assert set(by_kind["upload"]) <= {413, 422, "503-overloaded", "503-unavailable"}, by_kind[
        "upload"
    ]
    assert by_kind["upload"]["503-overloaded"] > 0, by_kind["upload"]
    # Refused at once: typically in milliseconds; the tail allows for 2 busy cores (the abuse
    # client, the server's 2 workers and the normal client share them).
    assert np.percentile(refusals, 50) < 0.1, np.percentile(refusals, 50)
    assert np.percentile(refusals, 99) < 2.0, np.percentile(refusals, 99)
    assert "Traceback" not in output, output[-3000:]
