"""The demo pipeline end to end, then a real ``recsys serve`` answering real HTTP requests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

RECSYS = [sys.executable, "-m", "orchestration.cli.main"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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

    port = _free_port()
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
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.3)
        query = report["examples"][0]["video_id"]
        response = httpx.get(f"{base}/similar/{query}", params={"k": 5}, timeout=10)
        assert response.status_code == 200
        body = response.json()
        assert body["model_version"] == report["model_version"]
        results = body["results"]
        assert len(results) == 5
        assert query not in {r["video_id"] for r in results}
        assert results == sorted(results, key=lambda r: -r["score"])
        page = httpx.get(f"{base}/ui/videos/{query}", timeout=10)
        assert page.status_code == 200
        assert results[0]["video_id"] in page.text
        assert httpx.get(f"{base}/similar/no-such-video", timeout=10).status_code == 404
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
