"""`recsys serve` migrates the database once, before its workers start; the workers do not."""

from __future__ import annotations

import os

import pytest
import uvicorn

from api import uvicorn_runner
from api.factory import create_app_from_env
from recsys.db import session as db_session
from recsys.settings import Settings


def _count_upgrades(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = db_session.upgrade_schema

    def counting(engine, revision: str = "head") -> None:  # type: ignore[no-untyped-def]
        calls.append(str(engine.url))
        real(engine, revision)

    monkeypatch.setattr(db_session, "upgrade_schema", counting)
    monkeypatch.setattr(db_session, "_upgraded", set())  # as in a fresh process
    return calls


def test_serve_migrates_once_and_its_workers_do_not(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug: every uvicorn worker ran the migrations at start-up (N workers racing)."""
    for name in ("RECSYS_HOME", "RECSYS_DATABASE_URL", "RECSYS_DB_MIGRATE", "OMP_NUM_THREADS"):
        monkeypatch.setenv(name, "placeholder")  # recorded, so the test's changes are undone
        monkeypatch.delenv(name)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(settings.resolved_home / "metrics"))
    calls = _count_upgrades(monkeypatch)
    started: list[dict[str, str]] = []

    def fake_server(*args: object, **kwargs: object) -> None:
        started.append(dict(os.environ))
        app = create_app_from_env()  # what each worker process builds
        assert app.state.database is not None
        app.state.database.dispose()

    monkeypatch.setattr(uvicorn, "run", fake_server)
    monkeypatch.setattr(uvicorn_runner, "supervise", fake_server)
    uvicorn_runner.run(settings, workers=2)
    assert len(calls) == 1  # the parent, before the workers
    assert started and started[0]["RECSYS_DB_MIGRATE"] == "false"
    monkeypatch.setattr(db_session, "_upgraded", set())  # a second worker, a fresh process
    fake_server()
    assert len(calls) == 1
