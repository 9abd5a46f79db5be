"""A real ``recsys serve`` (2 workers) under load while a new index is published: zero failed
requests, the swap visible in responses, p50/p99 printed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from recsys.db import open_database
from recsys.settings import Settings
from recsys.testing import free_port, wait_ready
from tests.serving.catalog import build_catalog, publish

DURATION_S = 20.0
CLIENTS = 8
RECSYS = Path(sys.executable).with_name("recsys")


async def _client(base: str, ids: list[str], stop_at: float, seed: int, log: list) -> None:
    rng = np.random.default_rng(seed)
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
        while time.monotonic() < stop_at:
            video_id = ids[int(rng.integers(len(ids)))]
            start = time.perf_counter()
            try:
                response = await client.get(f"/similar/{video_id}", params={"k": 10})
                ok = response.status_code == 200
                version = response.json().get("index_version") if ok else response.text[:200]
            except httpx.HTTPError as error:
                ok, version = False, repr(error)
            log.append((time.monotonic(), time.perf_counter() - start, ok, version))


async def _load(base: str, ids: list[str], duration: float) -> list:
    log: list = []
    stop_at = time.monotonic() + duration
    await asyncio.gather(*(_client(base, ids, stop_at, i, log) for i in range(CLIENTS)))
    return log


@pytest.mark.slow
def test_serve_under_load_while_a_new_index_is_published(sqlite_settings: Settings) -> None:
    settings = sqlite_settings
    database = open_database(settings)
    catalog = build_catalog(settings, database, n=300)
    first_version = catalog.index_version
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RECSYS_INDEX_POLL_S": "0.2", "RECSYS_HOME": str(settings.home)}
    process = subprocess.Popen(
        [
            str(RECSYS),
            "serve",
            "--home",
            str(settings.home),
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_ready(base + "/readyz", process, timeout=60, interval=0.2)
        ids = list(catalog.served)

        async def scenario() -> tuple[list, str, float]:
            load = asyncio.create_task(_load(base, ids, DURATION_S))
            await asyncio.sleep(DURATION_S / 3)
            rng = np.random.default_rng(11)
            for video_id in catalog.served:
                vector = catalog.vectors[video_id] + 0.3 * rng.normal(size=16)
                catalog.vectors[video_id] = (vector / np.linalg.norm(vector)).astype(np.float32)
            published_at = time.monotonic()
            version = await asyncio.to_thread(publish, settings, database, catalog)
            return await load, version, published_at

        log, second_version, published_at = asyncio.run(scenario())
        metrics = httpx.get(base + "/metrics", timeout=5).text
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode(errors="replace")
        database.dispose()
    failures = [entry for entry in log if not entry[2]]
    latencies = np.array([entry[1] for entry in log]) * 1000
    versions = [entry[3] for entry in log]
    print(
        f"\nload: {len(log)} requests in {DURATION_S:.0f}s ({len(log) / DURATION_S:.0f} req/s), "
        f"p50 {np.percentile(latencies, 50):.2f} ms, p99 {np.percentile(latencies, 99):.2f} ms, "
        f"max {latencies.max():.1f} ms, failures {len(failures)}"
    )
    assert not failures, (failures[:5], output[-3000:])
    assert versions[0] == first_version
    assert second_version in versions, "the new index was never served"
    # Once both workers have swapped, nothing answers from the old index any more.
    last_old = max(t for t, _, _, v in log if v == first_version)
    assert last_old - published_at < 15.0
    assert all(v == second_version for t, _, _, v in log if t > last_old)
    assert "recsys_index_swaps_total" in metrics
    assert f'index_version="{second_version}"' in metrics
