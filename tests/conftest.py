"""Shared fixtures: isolated homes, SQLite and PostgreSQL databases, marker policy.

Marked tests (postgres, browser, ray, realdata) skip where their dependency is missing, except
under ``CI=true`` where a skip of anything but a GPU test is turned into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.db import Database, open_database
from recsys.settings import Settings, load_settings

IN_CI = os.environ.get("CI") == "true"
# Homes in the suite use the fast content descriptors; the tests of the default spec (real
# EfficientNet-Lite weights) unset this themselves.
os.environ.setdefault("RECSYS_FEATURE_EXTRACTOR", "content")
POSTGRES_ADMIN_URL = os.environ.get(
    "RECSYS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REAL_AV_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-av"


def require(condition: bool, reason: str, *, gpu: bool = False) -> None:
    """Skip when ``condition`` is false, or fail under CI (GPU tests may always skip)."""
    if condition:
        return
    if IN_CI and not gpu:
        pytest.fail(f"required in CI but unavailable: {reason}")
    pytest.skip(reason)


def _postgres_available() -> str | None:
    try:
        import psycopg

        url = POSTGRES_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, connect_timeout=3):
            return None
    except Exception as error:  # noqa: BLE001 - any failure means "not available"
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {error}"


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated template database; each test clones it (CREATE DATABASE ... TEMPLATE)."""
    problem = _postgres_available()
    require(problem is None, problem or "")
    import psycopg

    admin = POSTGRES_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"recsys_tmpl_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    from recsys.db.session import make_engine, upgrade_schema

    engine = make_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    yield name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _clone_postgres(template: str) -> tuple[str, str]:
    import psycopg

    admin = POSTGRES_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"recsys_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name, POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_postgres(name: str) -> None:
    import psycopg

    admin = POSTGRES_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings for an empty home, on SQLite and (marked ``postgres``) on PostgreSQL."""
    home = tmp_path / "home"
    if request.param == "sqlite":
        s = load_settings(home)
        s.ensure_dirs()
        yield s
        return
    template = request.getfixturevalue("postgres_template")
    name, url = _clone_postgres(template)
    s = load_settings(home, database_url=url)
    s.ensure_dirs()
    try:
        yield s
    finally:
        _drop_postgres(name)


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Settings for an empty home on SQLite only (tests that need no PostgreSQL run)."""
    s = load_settings(tmp_path / "home")
    s.ensure_dirs()
    return s


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    db = open_database(settings)
    yield db
    db.dispose()


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """One local Ray instance per test module (its start-up costs seconds)."""
    import importlib.util

    require(importlib.util.find_spec("ray") is not None, "ray[data] is not installed")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def real_av_dir() -> Path:
    require(REAL_AV_DIR.is_dir(), f"real clips not found at {REAL_AV_DIR}")
    return REAL_AV_DIR
