"""503s with a reason (no index, database down) and recovery without a restart; live swaps."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from api.config import ApiOptions
from api.deps import get_database
from api.factory import create_app
from recsys.db import Database, open_database
from recsys.db.session import make_engine
from recsys.settings import Settings, load_settings
from tests.api.conftest import ADMIN_TOKEN
from tests.conftest import POSTGRES_ADMIN_URL, _clone_postgres, _drop_postgres
from tests.serving.catalog import TinyCatalog, build_catalog, publish


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_no_index_is_503_until_one_is_published(
    settings: Settings, database: Database, api_options: ApiOptions
) -> None:
    settings.index_poll_s = 0.1
    settings.admin_token = ADMIN_TOKEN
    app = create_app(settings, options=api_options, database=database)
    with TestClient(app) as client:
        response = client.get("/similar/v001")
        assert response.status_code == 503
        assert "recsys index build" in response.json()["detail"]
        assert response.headers["retry-after"] == "1"
        assert client.post("/similar", json={"positive": ["v001"]}).status_code == 503
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "nothing is published" in ready.json()["detail"]
        assert client.get("/healthz").status_code == 200
        assert client.get("/similar/v001", params={"k": 0}).status_code == 422
        reload = client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert reload.status_code == 503 and "nothing is published" in reload.json()["detail"]
        catalog = build_catalog(settings, database)
        assert wait_for(lambda: client.get("/similar/v001").status_code == 200)
        assert client.get("/readyz").json()["index_version"] == catalog.index_version


def test_new_index_is_swapped_in_and_the_old_one_released(
    client: TestClient, catalog: TinyCatalog, settings: Settings, database: Database
) -> None:
    holder = client.app.state.holder  # type: ignore[attr-defined]
    old = weakref.ref(holder.state)
    before = client.get("/similar/v007", params={"k": 5}).json()
    # Next model output: same videos, new vectors; v008 leaves the index.
    rng = np.random.default_rng(7)
    for video_id in catalog.served:
        vector = catalog.vectors[video_id] + 0.5 * rng.normal(size=catalog.vectors[video_id].shape)
        catalog.vectors[video_id] = (vector / np.linalg.norm(vector)).astype(np.float32)
    catalog.served.remove("v008")
    new_version = publish(settings, database, catalog)
    assert new_version != before["index_version"]
    assert wait_for(lambda: client.get("/readyz").json()["index_version"] == new_version)
    after = client.get("/similar/v007", params={"k": 5}).json()
    assert after["index_version"] == new_version
    assert [r["video_id"] for r in after["results"]] == catalog.expected(
        catalog.vectors["v007"], 5, skip={"v007"}
    )
    assert client.get("/similar/v008").status_code == 409
    gc.collect()
    assert old() is None, "the previous index is still referenced"


def test_a_corrupt_index_keeps_the_old_one_serving(
    client: TestClient, catalog: TinyCatalog, settings: Settings
) -> None:
    bad = settings.indexes_dir / "20990101T000000Z-bad000"
    bad.mkdir()
    (bad / "manifest.json").write_text("{ not json")
    (settings.indexes_dir / "CURRENT").write_text(bad.name + "\n")
    assert wait_for(lambda: client.app.state.holder.last_error is not None)  # type: ignore[attr-defined]
    response = client.get("/similar/v001")
    assert response.status_code == 200
    assert response.json()["index_version"] == catalog.index_version
    assert client.get("/readyz").status_code == 200


def test_sqlite_database_down_is_503_and_recovers(
    sqlite_settings: Settings, api_options: ApiOptions
) -> None:
    database = open_database(sqlite_settings)
    sqlite_settings.index_poll_s = 0.1
    catalog = build_catalog(sqlite_settings, database)
    app = create_app(sqlite_settings, options=api_options, database=database)
    # A database that cannot be opened: every query fails like an outage does.
    engine = make_engine("sqlite:////nonexistent/dir/recsys.db")
    broken = Database(engine=engine, sessionmaker=sessionmaker(engine))
    with TestClient(app) as client:
        app.dependency_overrides[get_database] = lambda: broken
        down = client.get("/videos/v001")
        assert down.status_code == 503
        assert "database is unreachable" in down.json()["detail"]
        ready = client.get("/readyz")
        # An index is loaded and /similar is served from memory: degraded, still in the LB.
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert "database unreachable" in ready.json()["detail"]
        # The hot path needs no database: recommendations keep flowing.
        assert client.get("/similar/v001").status_code == 200
        assert client.get("/similar/not-in-snapshot").status_code == 503
        app.dependency_overrides.clear()
        assert client.get("/videos/v001").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/similar/not-in-snapshot").status_code == 404
    assert catalog.index_version


def _set_connections(url: str, allowed: bool) -> None:
    name = url.rsplit("/", 1)[1]
    admin = POSTGRES_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


@pytest.fixture
def postgres_settings(postgres_template: str, tmp_path: Path) -> Iterator[Settings]:
    name, url = _clone_postgres(postgres_template)
    settings = load_settings(tmp_path / "pg-home", database_url=url)
    settings.ensure_dirs()
    try:
        yield settings
    finally:
        _drop_postgres(name)


@pytest.mark.postgres
def test_postgres_outage_is_503_and_recovers(
    postgres_settings: Settings, api_options: ApiOptions
) -> None:
    settings = postgres_settings
    database = open_database(settings)
    build_catalog(settings, database)
    app = create_app(settings, options=api_options, database=database)
    with TestClient(app) as client:
        assert client.get("/videos/v001").status_code == 200
        _set_connections(settings.database_url or "", False)
        try:
            down = client.get("/videos/v001")
            assert down.status_code == 503, down.text
            assert down.json()["error"] == "unavailable"
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "degraded"
            assert client.get("/similar/v001").status_code == 200
        finally:
            _set_connections(settings.database_url or "", True)
        assert wait_for(lambda: client.get("/videos/v001").status_code == 200)
        assert client.get("/readyz").status_code == 200
    database.dispose()
