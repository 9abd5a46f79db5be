"""The demo pipeline end to end, then a real ``recsys serve`` answering real HTTP requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from recsys.testing import free_port, stop_process, wait_ready

RECSYS = [sys.executable, "-m", "orchestration.cli.main"]


def _run(args: list[str], env: dict[str, str], timeout: float = 420) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*RECSYS, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.slow
def test_demo_pipeline_then_serve(tmp_path: Path) -> None:
    env = {**os.environ, "RECSYS_HOME": str(tmp_path / "home"), "RECSYS_INDEX_POLL_S": "0.2"}
    args = [
        "demo",
        "--no-serve",
        "--json",
        "--count",
        "32",
        "--topics",
        "4",
        "--seconds",
        "1",
        "--epochs",
        "8",
        "--workers",
        "2",
    ]
    first = _run(args, env)
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads(first.stdout)
    assert report["ingest"]["failed"] == 0
    assert report["refresh"]["embedded"] == 32
    assert report["index"]["recall_at_10"] >= 0.95
    # Related videos share the query's topic far more often than chance.
    assert report["category_match_at_10"] > report["chance_category_match"] + 0.2

    # A second run reuses the corpus, the model, the embeddings and the index.
    second = _run(args, env)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout)
    assert again["model_reused"] is True
    assert again["refresh"]["selected"] == 0
    assert again["index"]["reused"] is True

    port = free_port()
    server = subprocess.Popen(
        [*RECSYS, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/readyz", server, timeout=90, interval=0.3)
        query = report["examples"][0]["video_id"]
        response = httpx.get(f"{base}/similar/{query}", params={"k": 5}, timeout=10)
        assert response.status_code == 200
        body = response.json()
        assert body["model_version"] == report["model_version"]
        results = body["results"]
        assert len(results) == 5
        assert query not in {r["video_id"] for r in results}
        assert results == sorted(results, key=lambda r: -r["score"])
        # what the demo printed is what the default endpoint serves
        printed = report["examples"][0]
        assert body["source"] == printed["source"]
        assert [r["video_id"] for r in results] == [s["video_id"] for s in printed["similar"]]
        page = httpx.get(f"{base}/ui/videos/{query}", timeout=10)
        assert page.status_code == 200
        assert results[0]["video_id"] in page.text
        assert httpx.get(f"{base}/similar/no-such-video", timeout=10).status_code == 404
    finally:
        stop_process(server, timeout=20)
