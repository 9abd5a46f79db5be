"""Readiness: with the database down a worker that holds an index stays in the load balancer
(200 ``degraded`` with the reason, since /similar is answered from memory); 503 only when
nothing can be served. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from api.config import ApiOptions
from api.deps import get_database
from api.factory import create_app
from api.routes import health
from recsys.db import Database
from recsys.db.session import make_engine
from recsys.settings import Settings
from tests.api.conftest import ADMIN_TOKEN
from tests.serving.catalog import TinyCatalog

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def dead_database(settings: Settings) -> Database:
    """A database of the same kind that cannot be reached: every connection fails at once."""
    if settings.database_url:  # PostgreSQL: nothing listens on port 1
        url = "postgresql+psycopg://recsys_user@127.0.0.1:1/recsys?connect_timeout=2"
    else:
        url = "sqlite:////nonexistent/dir/recsys.db"
    engine = make_engine(url)
    return Database(engine=engine, sessionmaker=sessionmaker(engine))


@pytest.fixture
def outage(client: TestClient, settings: Settings) -> Iterator[Database]:
    """The database goes down for the requests of ``client`` (the loaded index stays)."""
    broken = dead_database(settings)
    client.app.dependency_overrides[get_database] = lambda: broken  # type: ignore[attr-defined]
    yield broken
    client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
    broken.dispose()


def test_ready_when_index_and_database_are_fine(client: TestClient, catalog: TinyCatalog) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["database"] == "ok"
    assert ready.json()["detail"] is None


def test_database_down_with_an_index_is_degraded_not_unavailable(
    client: TestClient, catalog: TinyCatalog, outage: Database
) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "degraded" and body["database"] == "unreachable"
    assert body["index_version"] == catalog.index_version
    assert body["vectors"] == len(catalog.served)
    assert "database unreachable" in body["detail"]
    assert "answered from the loaded index" in body["detail"]
    assert "retry-after" not in ready.headers
    # Nothing about the database's address, user or files reaches an anonymous client ...
    for secret in ("127.0.0.1", "recsys_user", "port 1", "/nonexistent"):
        assert secret not in body["detail"]
    # ... an operator with the token reads the driver's own words.
    admin = client.get("/readyz", headers=ADMIN).json()
    assert admin["status"] == "degraded" and len(admin["detail"]) > len(body["detail"])
    # And what readiness promises holds: recommendations flow, catalog reads do not.
    assert client.get("/similar/v001").status_code == 200
    assert client.get("/videos/v001").status_code == 503


def test_database_back_is_ready_again(client: TestClient, settings: Settings) -> None:
    broken = dead_database(settings)
    client.app.dependency_overrides[get_database] = lambda: broken  # type: ignore[attr-defined]
    assert client.get("/readyz").json()["status"] == "degraded"
    client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
    assert client.get("/readyz").json()["status"] == "ready"
    broken.dispose()


def test_nothing_to_serve_is_503(settings: Settings, database: Database) -> None:
    app = create_app(settings, options=ApiOptions(), database=database)
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable" and ready.json()["database"] == "ok"
        assert ready.headers["retry-after"] == "1"
        assert "nothing is published" in ready.json()["detail"]
        assert str(settings.indexes_dir) not in ready.json()["detail"]
        broken = dead_database(settings)
        app.dependency_overrides[get_database] = lambda: broken
        down = client.get("/readyz")
        assert down.status_code == 503 and down.json()["database"] == "unreachable"
        assert "nothing is published" in down.json()["detail"]
        broken.dispose()


def test_a_newer_index_that_fails_to_load_is_degraded(
    client: TestClient, catalog: TinyCatalog, settings: Settings
) -> None:
    bad = settings.indexes_dir / "20990101T000000Z-bad000"
    bad.mkdir()
    (bad / "manifest.json").write_text("{ not json")
    (settings.indexes_dir / "CURRENT").write_text(bad.name + "\n")
    deadline = time.monotonic() + 10
    while client.app.state.holder.last_error is None and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.05)
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["index_version"] == catalog.index_version
    assert "still serving" in ready.json()["detail"] and bad.name in ready.json()["detail"]
    assert str(settings.indexes_dir) not in ready.json()["detail"]


def test_a_hanging_database_is_waited_for_a_bounded_time_by_one_probe(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    calls = []

    def hangs(_database: Database) -> None:
        calls.append(1)
        release.wait(10)

    monkeypatch.setattr(health, "_database_problem", hangs)
    monkeypatch.setattr(health, "DATABASE_PROBE_TIMEOUT_S", 0.3)
    try:
        results: list[dict] = []

        def probe() -> None:
            results.append(client.get("/readyz").json())

        threads = [threading.Thread(target=probe) for _ in range(4)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert time.monotonic() - start < 5
        assert len(results) == 4
        assert all(r["status"] == "degraded" and r["database"] == "unreachable" for r in results)
        assert all("did not answer within 0.3s" in r["detail"] for r in results)
        assert len(calls) == 1  # concurrent probes share the one in flight
    finally:
        release.set()
