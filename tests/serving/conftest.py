"""Fixtures: a real tiny catalog (database rows, embedding store, a published index) and the
serving state over it, queried without HTTP."""

from __future__ import annotations

import pytest

from index import load_active
from recsys.db import Database
from recsys.settings import Settings
from serving.state import ServingState, build_state
from tests.serving.catalog import TinyCatalog, build_catalog


@pytest.fixture
def catalog(settings: Settings, database: Database) -> TinyCatalog:
    return build_catalog(settings, database)


def serving_state(settings: Settings, database: Database) -> ServingState:
    """The published index with its catalog snapshot, as an API worker loads it."""
    loaded = load_active(settings)
    assert loaded is not None
    return build_state(settings, database, loaded)


@pytest.fixture
def state(catalog: TinyCatalog, settings: Settings, database: Database) -> ServingState:
    return serving_state(settings, database)
