"""Error answers to anonymous clients name no server paths, URIs, hosts or database errors: the
server log has them under the request id the answer carries (header and body); an admin token
reads them as they are. And Prometheus multiprocess mode drops the gauges of exited workers."""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from sqlalchemy.orm import sessionmaker

from api import metrics
from api.deps import get_database
from api.errors import DATABASE_DETAIL, public_text
from api.uvicorn_runner import ReapingMultiprocess
from recsys.db import Database
from recsys.db.models import Video, VideoStatus
from recsys.db.session import make_engine
from recsys.settings import Settings
from serving import pipeline
from tests.api.conftest import ADMIN_TOKEN
from tests.serving.catalog import TinyCatalog

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET_DIR = "/srv/library/private"
SECRET_REASON = f"cannot decode {SECRET_DIR}/broken2.mp4: moov atom not found"


def assert_request_id(response) -> str:  # type: ignore[no-untyped-def]
    request_id = response.headers["x-request-id"]
    assert request_id and response.json()["request_id"] == request_id
    return str(request_id)


@pytest.fixture
def broken_video(catalog: TinyCatalog, database: Database) -> str:
    """A failed video whose recorded reason names its file on the server."""
    with database.session() as session:
        session.add(
            Video(
                video_id="broken2",
                uri=f"{SECRET_DIR}/broken2.mp4",
                status=VideoStatus.FAILED.value,
                status_reason=SECRET_REASON,
            )
        )
    return "broken2"


def test_a_reason_naming_a_server_file_is_redacted_logged_and_shown_to_the_admin(
    client: TestClient, broken_video: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="api.errors")
    answer = client.get(f"/similar/{broken_video}")
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert SECRET_DIR not in answer.text
    assert "moov atom not found" in body["reason"]  # the useful part stays
    assert body["status"] == "failed" and body["video_id"] == broken_video
    request_id = assert_request_id(answer)
    logged = [r.getMessage() for r in caplog.records if request_id in r.getMessage()]
    assert logged and SECRET_DIR in logged[0]
    admin = client.get(f"/similar/{broken_video}", headers=ADMIN)
    assert admin.status_code == 409 and admin.json()["reason"] == SECRET_REASON
    # The same reason in the catalog record and on the page.
    detail = client.get(f"/videos/{broken_video}")
    assert detail.status_code == 200
    assert SECRET_DIR not in detail.text and "moov atom" in detail.json()["status_reason"]
    assert client.get(f"/videos/{broken_video}", headers=ADMIN).json()["status_reason"] == (
        SECRET_REASON
    )
    page = client.get(f"/ui/videos/{broken_video}")
    assert page.status_code == 200 and SECRET_DIR not in page.text and "failed" in page.text


def test_missing_files_name_no_server_path(client: TestClient, catalog: TinyCatalog) -> None:
    for path in ("/media/v001", "/thumbnails/v009.jpg", "/media/nope"):
        answer = client.get(path)
        assert answer.status_code == 404, (path, answer.text)
        assert "/nonexistent" not in answer.text
        assert str(catalog.settings.resolved_home) not in answer.text
        assert_request_id(answer)


def test_an_unexpected_error_is_a_generic_500_with_the_request_id(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"{SECRET_DIR}/index.faiss unreadable via postgresql://u:pw@db/x")

    monkeypatch.setattr(pipeline, "run", explode)
    answer = client.get("/similar/v001", params={"category": "music"})
    assert answer.status_code == 500
    request_id = assert_request_id(answer)
    assert answer.json()["detail"] == "internal error; see the server log"
    assert SECRET_DIR not in answer.text and "postgresql" not in answer.text
    assert request_id in caplog.text and "unreadable" in caplog.text


def test_a_database_outage_names_no_host_or_user(client: TestClient, settings: Settings) -> None:
    if settings.database_url:
        url = "postgresql+psycopg://leaky_user@127.0.0.1:1/secretdb?connect_timeout=2"
    else:
        url = "sqlite:////nonexistent/leaky/recsys.db"
    engine = make_engine(url)
    broken = Database(engine=engine, sessionmaker=sessionmaker(engine))
    client.app.dependency_overrides[get_database] = lambda: broken  # type: ignore[attr-defined]
    try:
        for path in ("/videos/v001", "/ui/videos/v001", "/media/v000"):
            answer = client.get(path)
            assert answer.status_code == 503, (path, answer.text)
            for secret in ("leaky", "127.0.0.1", "secretdb", "/nonexistent", "psycopg"):
                assert secret not in answer.text, (path, secret)
            assert answer.headers["x-request-id"]
        assert "database is unreachable" in client.get("/videos/v001").json()["detail"]
    finally:
        client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
        broken.dispose()


def test_no_index_names_no_server_path(settings: Settings, database: Database) -> None:
    from api.config import ApiOptions
    from api.factory import create_app

    app = create_app(settings, options=ApiOptions(), database=database)
    with TestClient(app) as client:
        answer = client.get("/similar/v001")
        assert answer.status_code == 503
        assert "nothing is published" in answer.json()["detail"]
        assert "recsys index build" in answer.json()["detail"]
        assert str(settings.resolved_home) not in answer.text


def test_request_ids_from_clients_are_kept_only_when_sane(client: TestClient) -> None:
    kept = client.get("/videos/nope", headers={"X-Request-ID": "lb-7f3a.42"})
    assert kept.headers["x-request-id"] == "lb-7f3a.42" == kept.json()["request_id"]
    for bad in ("two words", "x" * 65, "<script>"):
        replaced = client.get("/videos/nope", headers={"X-Request-ID": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"]), bad
    invalid = client.get("/similar/v001", params={"k": 0})
    assert invalid.status_code == 422
    assert_request_id(invalid)


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        ("video 'sub/clip' is failed and is not served", "'sub/clip'", None),
        ("the upload cannot be decoded: no video stream", "no video stream", None),
        ("k: 1/3 of the shards", "1/3", None),
        ("an empty path segment (a leading, trailing or doubled '/')", "doubled '/')", None),
        ("file /srv/media/a.mp4 is missing", "is missing", "/srv/media"),
        ("at '/srv/my media/a b.mp4'; re-run ingest", "re-run ingest", "my media"),
        ("see ~/Videos/a.mp4", "see", "~/Videos"),
        (r"file C:\media\x.mp4 bad", "bad", "media"),
        ("fetch file:///etc/passwd failed", "failed", "/etc"),
        ("via postgresql+psycopg://bob:pw@db.internal:5432/recsys", "via", "bob"),
        ("host=10.1.2.3 user=bob dbname=x", None, "bob"),
        ("reached 10.1.2.3:5432 then", "then", "10.1.2.3"),
    ],
)
def test_public_text(text: str, kept: str | None, gone: str | None) -> None:
    public = public_text(text)
    assert public is not None
    if kept is not None:
        assert kept in public
    if gone is not None:
        assert gone not in public


@pytest.mark.parametrize(
    "text",
    [
        '(psycopg.OperationalError) connection to server at "db" failed: FATAL:  role "x"',
        "(sqlite3.OperationalError) no such table: videos [SQL: SELECT * FROM videos]",
        "SELECT videos.id FROM videos WHERE videos.video_id = 'x'",
    ],
)
def test_database_errors_are_replaced_whole(text: str) -> None:
    assert public_text(text) == DATABASE_DETAIL


# ------------------------------------------------------------------ Prometheus workers
def write_sample(directory: Path, prefix: str, pid: int, name: str, value: float) -> None:
    """What a worker's metric leaves in the multiprocess directory."""
    store = MmapedDict(str(directory / f"{prefix}_{pid}.db"))
    store.write_value(mmap_key(name, name, [], [], "help"), value, 0.0)
    store.close()


def write_live_gauge(directory: Path, pid: int, value: float) -> None:
    write_sample(directory, "gauge_liveall", pid, "recsys_index_vectors", value)


def collected(directory: Path) -> str:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return generate_latest(registry).decode()


def test_exited_workers_are_marked_dead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    alive, dead = 4_000_001, 4_000_002
    write_live_gauge(tmp_path, alive, 60)
    write_live_gauge(tmp_path, dead, 50)
    # Counters stay: they are totals.
    write_sample(tmp_path, "counter", dead, "recsys_index_swaps_total", 3)
    assert f'pid="{dead}"' in collected(tmp_path)
    assert metrics.reap_dead_workers([alive]) == [dead]
    assert not (tmp_path / f"gauge_liveall_{dead}.db").exists()
    assert (tmp_path / f"counter_{dead}.db").exists()
    text = collected(tmp_path)
    assert f'pid="{alive}"' in text and f'pid="{dead}"' not in text
    assert "recsys_index_swaps_total 3.0" in text
    assert metrics.reap_dead_workers([alive]) == []  # once


def test_the_supervisor_reaps_after_each_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn's supervisor loop, with fake workers: the one that died is marked after the
    check, and every one after the final join."""
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))

    def worker(pid: int, running: bool) -> SimpleNamespace:
        return SimpleNamespace(pid=pid, process=SimpleNamespace(is_alive=lambda: running))

    supervisor = object.__new__(ReapingMultiprocess)  # no signal handlers, no processes
    supervisor.should_exit = threading.Event()
    supervisor.should_exit.set()  # uvicorn's own check does nothing while exiting
    supervisor.processes = [worker(4_000_011, True), worker(4_000_012, False)]
    for pid in (4_000_011, 4_000_012):
        write_live_gauge(tmp_path, pid, 1)
    supervisor.keep_subprocess_alive()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gauge_liveall_4000011.db"]
    supervisor.processes = [worker(4_000_011, False)]
    monkeypatch.setattr(type(supervisor).__mro__[1], "join_all", lambda self: None)
    supervisor.join_all()
    assert list(tmp_path.iterdir()) == []


def test_a_reused_metrics_directory_starts_empty(tmp_path: Path) -> None:
    write_live_gauge(tmp_path, 4_000_021, 1)
    (tmp_path / "counter_4000021.db").write_bytes(b"")
    (tmp_path / "keep.txt").write_text("not a sample file")
    assert metrics.clear_multiprocess_dir(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_reaping_outside_multiprocess_mode_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    assert metrics.reap_dead_workers([os.getpid()]) == []
