"""Bounded requests: body sizes capped before parsing (413), the work of one search bounded
(``partial``), and deep searches beyond the per-worker cap shed at once (503 + Retry-After)."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.config import ApiOptions
from api.factory import create_app
from recsys.db import Database
from recsys.settings import Settings
from recsys.testing import free_port
from serving import pipeline
from tests.serving.catalog import TinyCatalog, build_catalog

BODY_LIMIT = 64 * 1024  # the default of RECSYS_API_MAX_BODY_BYTES


def ids_of(body: dict) -> list[str]:
    return [item["video_id"] for item in body["results"]]


@pytest.fixture
def sqlite_catalog(sqlite_settings: Settings, sqlite_database: Database) -> TinyCatalog:
    return build_catalog(sqlite_settings, sqlite_database)


def app_client(catalog: TinyCatalog, database: Database, **options: object) -> TestClient:
    app = create_app(
        catalog.settings, options=ApiOptions(metadata_refresh_s=60, **options), database=database
    )
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def sqlite_client(sqlite_catalog: TinyCatalog, sqlite_database: Database) -> Iterator[TestClient]:
    with app_client(sqlite_catalog, sqlite_database) as client:
        yield client


# ------------------------------------------------------------------ item 4: request bodies
def test_a_body_over_the_limit_is_413_before_it_is_parsed(sqlite_client: TestClient) -> None:
    # Valid JSON, but larger than the cap: refused on its Content-Length, not parsed (parsing
    # would have answered 422 for a positive list over 100 ids).
    body = json.dumps({"positive": [f"v{i % 60:03d}" for i in range(20_000)], "k": 5})
    assert len(body) > BODY_LIMIT == ApiOptions().max_body_bytes
    response = sqlite_client.post(
        "/similar", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    error = response.json()
    assert error["error"] == "request_too_large"
    assert str(BODY_LIMIT) in error["detail"] and "RECSYS_API_MAX_BODY_BYTES" in error["detail"]
    # Any route, any method: a GET with a large body, the admin route.
    large = b"x" * (BODY_LIMIT + 1)
    assert sqlite_client.request("GET", "/similar/v001", content=large).status_code == 413
    assert sqlite_client.post("/admin/reload", content=large).status_code == 413
    # Within the limit everything is as before.
    fine = sqlite_client.post("/similar", json={"positive": ["v001", "v002"], "k": 3})
    assert fine.status_code == 200, fine.text
    too_many = sqlite_client.post("/similar", json={"positive": ["v001"] * 101})
    assert too_many.status_code == 422


def test_a_chunked_body_growing_past_the_limit_is_413(sqlite_client: TestClient) -> None:
    sent = []

    def chunks(total: int) -> Iterator[bytes]:
        yield b'{"positive": ["v001"], "k": 3, "category": "'
        for _ in range(total // 8192):
            sent.append(8192)
            yield b"a" * 8192
        yield b'"}'

    response = sqlite_client.post(
        "/similar", content=chunks(4 * BODY_LIMIT), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "request_too_large"
    # A small chunked body is read and answered normally.
    small = sqlite_client.post(
        "/similar",
        content=iter([b'{"positive": ["v001"],', b' "k": 3}']),
        headers={"Content-Type": "application/json"},
    )
    assert small.status_code == 200, small.text
    assert len(small.json()["results"]) == 3


# ------------------------------------------------------------- item 5: the work of a search
def test_a_filter_matching_almost_nothing_costs_one_shallow_search(
    catalog: TinyCatalog, settings: Settings, database: Database
) -> None:
    # "news" under 12 s: two videos of 60. The filter runs inside the index (issue 16: an ID
    # selector), so the first round (k + the query itself + 1) finds both and knows there is
    # nothing more: no deeper rounds, whatever the depth budget.
    params = {"k": 10, "category": "news", "max_duration": 12}
    expected = catalog.expected(
        catalog.vectors["v000"], 10, skip={"v000"}, category="news", max_duration=12
    )
    for budget in ({}, {"search_max_depth": 8}):
        with app_client(catalog, database, **budget) as client:
            response = client.get("/similar/v000", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["searched"] == 12
            assert body["exhausted"] is True and body["partial"] is False
            assert ids_of(body) == expected and len(expected) == 2
            # Unfiltered queries are never partial.
            plain = client.get("/similar/v000", params={"k": 10}).json()
            assert plain["partial"] is False and len(plain["results"]) == 10


def test_an_ivf_search_is_widened_no_further_than_the_effort_budget(
    sqlite_settings: Settings, sqlite_database: Database
) -> None:
    # One list per category cluster, one probed: a "news" filter on a "music" video finds
    # nothing in the probed list; without widening allowed the answer is partial, not a scan.
    catalog = build_catalog(sqlite_settings, sqlite_database, index_factory="IVF3,Flat")
    params = {"k": 5, "category": "news"}
    with app_client(catalog, sqlite_database, search_max_effort=1) as client:
        body = client.get("/similar/v000", params=params).json()
    assert body["partial"] is True and body["exhausted"] is False
    assert len(body["results"]) < 5
    with app_client(catalog, sqlite_database) as client:
        full = client.get("/similar/v000", params=params).json()
    assert full["partial"] is False
    assert ids_of(full) == catalog.expected(
        catalog.vectors["v000"], 5, skip={"v000"}, category="news"
    )


def test_deep_searches_beyond_the_cap_are_shed_with_503_at_once(
    sqlite_catalog: TinyCatalog, sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    entered = threading.Semaphore(0)
    real_nearest = pipeline.nearest

    def slow_nearest(*args, **kwargs):  # type: ignore[no-untyped-def]
        if args[3].narrowing:  # filtered searches hang until released
            entered.release()
            release.wait(30)
        return real_nearest(*args, **kwargs)

    monkeypatch.setattr(pipeline, "nearest", slow_nearest)
    filtered = {"k": 5, "category": "news"}
    with (
        app_client(sqlite_catalog, sqlite_database, max_deep_searches=2) as client,
        ThreadPoolExecutor(4) as pool,
    ):
        try:
            held = [pool.submit(client.get, "/similar/v001", params=filtered) for _ in range(2)]
            assert entered.acquire(timeout=10) and entered.acquire(timeout=10)
            start = time.perf_counter()
            shed = pool.submit(client.get, "/similar/v002", params=filtered).result(timeout=5)
            assert time.perf_counter() - start < 2.0
            assert shed.status_code == 503, shed.text
            assert shed.headers["Retry-After"] == "1"
            assert shed.json()["error"] == "overloaded"
            assert "RECSYS_API_MAX_DEEP_SEARCHES=2" in shed.json()["detail"]
            by_examples = pool.submit(
                client.post, "/similar", json={"positive": ["v003"], "k": 3}
            ).result(timeout=5)
            assert by_examples.status_code == 503
            # Plain queries are answered inline, never counted, never shed.
            plain = pool.submit(client.get, "/similar/v004", params={"k": 3}).result(timeout=5)
            assert plain.status_code == 200, plain.text
        finally:
            release.set()
        assert [f.result(timeout=10).status_code for f in held] == [200, 200]
        # The slots are free again.
        again = client.get("/similar/v002", params=filtered)
        assert again.status_code == 200, again.text
        assert client.app.state.search_limits.in_flight == 0


@contextmanager
def real_server(app: FastAPI) -> Iterator[int]:
    """``app`` under uvicorn (httptools) in a thread on 127.0.0.1; yields the port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http="httptools")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _chunked_until_answered(port: int, path: str, chunks: int) -> bytes:
    """POST a chunked body of up to ``chunks`` 8 KiB pieces; what the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        piece = b"2000\r\n" + b"v" * 8192 + b"\r\n"
        for _ in range(chunks):
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:  # answered before the body ended
                break
            try:
                sock.sendall(piece)
            except OSError:
                break
        else:
            sock.sendall(b"0\r\n\r\n")
        return _read_answer(sock)


def _read_answer(sock: socket.socket) -> bytes:
    """One HTTP response (headers and Content-Length body) read from ``sock``."""
    answer = b""
    while not _complete(answer):
        data = sock.recv(65536)
        if not data:
            break
        answer += data
    return answer


def _complete(answer: bytes) -> bool:
    head, found, body = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def test_oversized_bodies_are_refused_over_a_real_socket(
    sqlite_catalog: TinyCatalog, sqlite_database: Database
) -> None:
    """The same limits through uvicorn itself (httptools), where chunked bodies really stream:
    the answer comes while the client is still sending, long before 8 MB went by."""
    app = create_app(
        sqlite_catalog.settings,
        options=ApiOptions(metadata_refresh_s=60),
        database=sqlite_database,
    )
    with real_server(app) as port:
        answer = _chunked_until_answered(port, "/similar", chunks=1000)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
        assert b"request_too_large" in answer and b"RECSYS_API_MAX_BODY_BYTES" in answer
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            ok = http.post("/similar", json={"positive": ["v001"], "k": 2})
            assert ok.status_code == 200, ok.text
            declared = http.post(
                "/similar",
                content=b"x" * (BODY_LIMIT + 1),
                headers={"Content-Type": "application/json"},
            )
            assert declared.status_code == 413


# ------------------------------------------------------------------ item 6: slow uploads
def test_an_upload_that_trickles_in_past_the_receive_timeout_is_408(
    sqlite_catalog: TinyCatalog, sqlite_database: Database
) -> None:
    app = create_app(
        sqlite_catalog.settings,
        options=ApiOptions(metadata_refresh_s=60, upload_receive_timeout_s=0.5),
        database=sqlite_database,
    )
    boundary = "slowboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="a.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
    ).encode()
    with real_server(app) as port, socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.sendall(
            f"POST /similar/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(head) + 100_000}\r\n\r\n".encode()
            + head
        )
        start = time.monotonic()
        answer = b""
        for _ in range(40):  # 100 bytes every 0.1 s, far below what the timeout allows
            if select.select([sock], [], [], 0.1)[0]:
                answer = _read_answer(sock)
                break
            sock.sendall(b"\0" * 100)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
        assert time.monotonic() - start < 3.0
        assert b"RECSYS_API_UPLOAD_RECEIVE_TIMEOUT_S" in answer
        assert app.state.uploads.admitted == 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.get("/similar/v001", params={"k": 2}).status_code == 200
