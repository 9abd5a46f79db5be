"""Bounded PostgreSQL engines (connect and statement timeouts, a small pool) and migrations that
run once per deployment, not once per worker."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from recsys.db import Database, open_database
from recsys.db import session as db_session
from recsys.db.session import (
    DatabaseLimits,
    SchemaOutOfDate,
    make_engine,
    postgres_connect_args,
)
from recsys.errors import ConflictError
from recsys.settings import Settings, load_settings

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/recsys"


def test_postgres_engines_are_bounded_by_the_settings() -> None:
    limits = DatabaseLimits.from_settings(
        load_settings(
            "/nonexistent",
            db_pool_size=3,
            db_max_overflow=2,
            db_connect_timeout_s=2.0,
            db_statement_timeout_ms=1500,
        )
    )
    engine = make_engine(PG, limits)  # nothing connects until used
    try:
        assert engine.pool.size() == 3 and engine.pool._max_overflow == 2  # type: ignore[attr-defined]
        assert engine.pool._timeout == limits.pool_timeout_s  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    assert limits.connections_per_process == 5
    assert postgres_connect_args(PG, limits) == {
        "connect_timeout": 2,
        "options": "-c statement_timeout=1500",
    }
    # the defaults: 5 s to connect, 30 s per statement, at most 4 + 4 connections per process
    defaults = DatabaseLimits.from_settings(load_settings("/nonexistent"))
    assert defaults == DatabaseLimits()
    assert (defaults.connect_timeout_s, defaults.statement_timeout_ms) == (5.0, 30_000)
    assert defaults.connections_per_process == 8
    # what the URL says itself wins
    url = PG + "?connect_timeout=9&options=-c%20statement_timeout%3D5"
    assert postgres_connect_args(url, defaults) == {}
    kept = postgres_connect_args(PG + "?options=-c%20search_path%3Dx", defaults)
    assert kept == {"connect_timeout": 5, "options": "-c search_path=x -c statement_timeout=30000"}


def test_a_server_that_never_answers_fails_the_connection_in_time() -> None:
    """Bug: no connect_timeout: a PostgreSQL host that accepts TCP but never answers hung
    every worker forever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # the kernel completes the handshake; nobody ever speaks
    port = listener.getsockname()[1]
    engine = make_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{port}/recsys",
        DatabaseLimits(connect_timeout_s=1.0),
    )
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            with engine.connect():
                outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - reported below
            outcome.append(error)

    started = time.monotonic()
    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(15)
    try:
        assert outcome, "the connection attempt was still hanging after 15 s"
        assert isinstance(outcome[0], OperationalError)
        assert time.monotonic() - started < 10
    finally:
        listener.close()
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_statements_are_cut_off_but_migrations_are_not(settings: Settings) -> None:
    settings.db_statement_timeout_ms = 300
    database = open_database(settings)
    try:
        with database.engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "300ms"
            with pytest.raises(OperationalError, match="statement timeout"):
                connection.execute(text("SELECT pg_sleep(3)"))
        # migrations lift the limit for their own transaction only
        db_session.upgrade_schema(database.engine)
        with database.engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "300ms"
    finally:
        database.dispose()


def _count_upgrades(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = db_session.upgrade_schema

    def counting(engine, revision: str = "head") -> None:  # type: ignore[no-untyped-def]
        calls.append(str(engine.url))
        real(engine, revision)

    monkeypatch.setattr(db_session, "upgrade_schema", counting)
    monkeypatch.setattr(db_session, "_upgraded", set())  # as in a fresh worker process
    return calls


def test_a_process_told_not_to_migrate_only_checks_the_schema(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_upgrades(monkeypatch)
    settings.db_migrate = False
    opened = open_database(settings)  # the schema is at head: fine, and nothing migrated
    opened.dispose()
    assert calls == []
    settings.db_migrate = True
    open_database(settings).dispose()
    assert len(calls) == 1


def test_an_unmigrated_database_is_refused_when_migrations_are_off(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "home", db_migrate=False)
    with pytest.raises(SchemaOutOfDate, match="recsys db upgrade") as refused:
        open_database(settings)
    assert isinstance(refused.value, ConflictError)
    assert "no revision" in str(refused.value)
