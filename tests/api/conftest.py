"""Fixtures: a real tiny catalog and an app (lifespan running) over it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.config import ApiOptions
from api.factory import create_app
from recsys.db import Database, open_database
from recsys.settings import Settings
from tests.serving.catalog import TinyCatalog, build_catalog

ADMIN_TOKEN = "s3cret-admin-token"


@pytest.fixture
def catalog(settings: Settings, database: Database) -> TinyCatalog:
    settings.index_poll_s = 0.1
    settings.admin_token = ADMIN_TOKEN
    return build_catalog(settings, database)


@pytest.fixture
def sqlite_database(sqlite_settings: Settings) -> Iterator[Database]:
    """A database on SQLite only, for tests that need no PostgreSQL run."""
    database = open_database(sqlite_settings)
    yield database
    database.dispose()


@pytest.fixture
def api_options() -> ApiOptions:
    return ApiOptions(metadata_refresh_s=0.1)


@pytest.fixture
def client(
    catalog: TinyCatalog, settings: Settings, database: Database, api_options: ApiOptions
) -> Iterator[TestClient]:
    app = create_app(settings, options=api_options, database=database)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
