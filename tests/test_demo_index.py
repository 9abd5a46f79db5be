"""The demo's index step asks the ``CURRENT`` pointer what is served, not the database."""

from __future__ import annotations

from sqlalchemy import select

from index import BuildOptions, build_index, current_version
from index.manifest import MANIFEST_FILE
from orchestration.demo import _index
from recsys.db import Database
from recsys.db.models import IndexBuild
from recsys.settings import Settings
from tests.index.catalog import make_catalog


def test_demo_reuses_the_index_the_pointer_serves(settings: Settings, database: Database) -> None:
    """Bug: the demo rebuilt when the database's ``is_active`` flag was off (it asked the DB)."""
    make_catalog(settings, database, 300, 16)
    built = build_index(settings, database, BuildOptions(gpu="off"))
    with database.session() as session:  # stale bookkeeping: the pointer still serves it
        for row in session.scalars(select(IndexBuild)):
            row.is_active = False
    said: list[str] = []
    payload = _index(settings, database, "m1", said.append)
    assert payload["reused"] and payload["version"] == built.version
    assert (payload["recall_at_k"], payload["k"], payload["count"]) == (built.recall_at_k, 10, 300)
    assert payload["recall_at_10"] == built.recall_at_k
    assert current_version(settings) == built.version


def test_demo_rebuilds_when_the_served_index_does_not_fit(
    settings: Settings, database: Database
) -> None:
    make_catalog(settings, database, 300, 16)
    built = build_index(settings, database, BuildOptions(gpu="off"))
    assert built.directory is not None
    (built.directory / MANIFEST_FILE).write_text("{ not json")
    said: list[str] = []
    payload = _index(settings, database, "m1", said.append)
    assert not payload["reused"] and payload["version"] != built.version
    assert any("cannot be read" in line for line in said)
    assert current_version(settings) == payload["version"]
