"""Engine and session factory; the schema is brought up to date by Alembic on first use.

PostgreSQL engines are bounded (:class:`DatabaseLimits`, from the ``RECSYS_DB_*`` settings): a
connection attempt gives up after ``connect_timeout``, a statement after ``statement_timeout``,
and each process keeps at most ``pool_size + max_overflow`` connections, waiting at most
``pool_timeout`` for a free one. ``recsys serve --workers N`` therefore opens at most
``N × (pool_size + max_overflow)`` connections (16 with the defaults and two workers).

Migrations run once per process on first use, unless ``RECSYS_DB_MIGRATE`` is off: ``recsys
serve`` migrates before it starts its workers and turns it off for them, so N workers never race
to migrate. A process that does not migrate checks that the schema is at the revision this code
needs and says to run ``recsys db upgrade`` when it is not.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from recsys.errors import ConflictError, ResourceError
from recsys.settings import Settings

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_upgraded: set[str] = set()
_upgrade_lock = threading.Lock()


class SchemaOutOfDate(ConflictError):
    """The database schema is not at the revision this recsys needs, and this process was told
    not to migrate (``RECSYS_DB_MIGRATE=false``)."""


class DatabaseUnavailable(ResourceError):
    """The database the settings name cannot be opened (unreachable, missing, a URL that names
    no database or a driver that is not installed); the message never shows the password."""


URL_FORMS = "postgresql+psycopg://USER:PASSWORD@HOST:PORT/NAME or sqlite:///PATH"


def _unavailable(url: str, error: BaseException) -> DatabaseUnavailable:
    """One line naming the database (password hidden), what failed and what to do."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return DatabaseUnavailable(f"RECSYS_DATABASE_URL is not a database URL: give {URL_FORMS}")
    shown = parsed.render_as_string(hide_password=True)
    if isinstance(error, NoSuchModuleError):
        return DatabaseUnavailable(
            f"{parsed.drivername!r} (RECSYS_DATABASE_URL {shown}) is not a supported database: "
            f"give {URL_FORMS}"
        )
    if isinstance(error, ImportError):
        return DatabaseUnavailable(
            f"the database driver {error.name or 'module'!r} for {shown} is not installed: "
            f"name the installed one in RECSYS_DATABASE_URL, as in {URL_FORMS}"
        )
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    reason = lines[0] if lines else type(error).__name__
    if parsed.password:
        reason = reason.replace(str(parsed.password), "***")
    return DatabaseUnavailable(
        f"cannot connect to the database {shown}: {reason}; check RECSYS_DATABASE_URL and that "
        "the database is running and reachable"
    )


def _setting_default(name: str) -> Any:
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class DatabaseLimits:
    """Bounds of a PostgreSQL engine (SQLite has its own: a 30 s busy timeout, one file)."""

    connect_timeout_s: float = _setting_default("db_connect_timeout_s")
    statement_timeout_ms: int = _setting_default("db_statement_timeout_ms")
    pool_size: int = _setting_default("db_pool_size")
    max_overflow: int = _setting_default("db_max_overflow")
    pool_timeout_s: float = _setting_default("db_pool_timeout_s")

    @classmethod
    def from_settings(cls, settings: Settings) -> DatabaseLimits:
        return cls(
            connect_timeout_s=settings.db_connect_timeout_s,
            statement_timeout_ms=settings.db_statement_timeout_ms,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout_s=settings.db_pool_timeout_s,
        )

    @property
    def connections_per_process(self) -> int:
        return self.pool_size + self.max_overflow


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def postgres_connect_args(url: str, limits: DatabaseLimits) -> dict[str, Any]:
    """libpq options for the limits; what the URL itself sets (``?connect_timeout=``,
    ``?options=-c statement_timeout=…``) wins."""
    query = make_url(url).query
    args: dict[str, Any] = {}
    if "connect_timeout" not in query:
        args["connect_timeout"] = max(1, round(limits.connect_timeout_s))  # libpq: whole seconds
    options = query.get("options")
    existing = options if isinstance(options, str) else " ".join(options or ())
    if "statement_timeout" not in existing:
        timeout = f"-c statement_timeout={int(limits.statement_timeout_ms)}"
        args["options"] = f"{existing} {timeout}".strip()
    return args


def make_engine(url: str, limits: DatabaseLimits | None = None) -> Engine:
    """An engine with settings that suit both the CLI and the API (WAL and FKs on SQLite,
    bounded connections, pool and statements on PostgreSQL)."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        limits = limits or DatabaseLimits()
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=limits.pool_size,
            max_overflow=limits.max_overflow,
            pool_timeout=limits.pool_timeout_s,
            connect_args=postgres_connect_args(url, limits),
        )
    except (ArgumentError, ImportError) as error:  # NoSuchModuleError is an ArgumentError
        raise _unavailable(url, error) from None


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision`` on this engine's database."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        connection = engine.connect()
    except (OperationalError, InterfaceError) as error:
        raise _unavailable(engine.url.render_as_string(hide_password=False), error) from None
    with connection, connection.begin():
        if connection.dialect.name == "postgresql":
            # a migration may rewrite a large table: no statement limit, for this transaction
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def schema_revisions(engine: Engine) -> tuple[set[str], set[str]]:
    """(revisions the database is at, head revisions of this code's migrations)."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    heads = set(ScriptDirectory.from_config(config).get_heads())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current, heads


def check_schema(engine: Engine) -> None:
    """Refuse a database whose schema is not at this code's head (when not migrating).

    An unreachable database is only logged: whatever can be served without it still is, and
    every query reports the outage itself.
    """
    try:
        current, heads = schema_revisions(engine)
    except OperationalError as error:
        log.warning("cannot check the database schema (database unreachable?): %s", error.orig)
        return
    if current != heads:
        where = engine.url.render_as_string(hide_password=True)
        at = ", ".join(sorted(current)) or "no revision (an empty database)"
        raise SchemaOutOfDate(
            f"the database at {where} is at {at}, this recsys needs {', '.join(sorted(heads))}; "
            "run `recsys db upgrade` (migrations are off here: RECSYS_DB_MIGRATE=false)"
        )


@dataclass
class Database:
    """A migrated database: the engine plus a session factory."""

    engine: Engine
    sessionmaker: sessionmaker[Session]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(settings: Settings, *, migrate: bool | None = None) -> Database:
    """Open the database named by the settings; migrate it on first use in this process.

    ``migrate`` None follows ``settings.db_migrate``; without migrating, the schema revision is
    checked instead (:class:`SchemaOutOfDate`).
    """
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.resolved_home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url, DatabaseLimits.from_settings(settings))
    try:
        if settings.db_migrate if migrate is None else migrate:
            with _upgrade_lock:
                if url not in _upgraded:
                    upgrade_schema(engine)
                    _upgraded.add(url)
        elif url not in _upgraded:
            check_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return Database(engine=engine, sessionmaker=sessionmaker(engine, expire_on_commit=False))
