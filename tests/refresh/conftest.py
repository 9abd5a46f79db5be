"""Fixtures of the refresh tests: one tiny synthetic corpus per session, catalogs per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from recsys.db import Database
from recsys.settings import Settings
from recsys.synth import CorpusInfo, generate_corpus
from tests.refresh.helpers import feature_dims, ingest, make_model


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusInfo:
    """12 one-second videos in 3 topics (one in ten silent), written once per session."""
    return generate_corpus(tmp_path_factory.mktemp("refresh") / "corpus", 12, 3, 1.0, seed=7)


@pytest.fixture(scope="session")
def dims(corpus: CorpusInfo) -> tuple[int, int]:
    return feature_dims(corpus)


@pytest.fixture
def files(corpus: CorpusInfo) -> dict[str, Path]:
    return {v.video_id: corpus.out_dir / v.file for v in corpus.videos}


@pytest.fixture
def catalog(settings: Settings, database: Database, corpus: CorpusInfo) -> CorpusInfo:
    ingest(settings, database, [corpus.manifest])
    return corpus


@pytest.fixture
def model_version(settings: Settings, database: Database, dims: tuple[int, int]) -> str:
    return make_model(settings, database, dims, seed=0, activate=True)


@dataclass
class SqliteCatalog:
    """The corpus ingested into an SQLite home with an active model (tests that need SQLite:
    worker processes, monkeypatched stage-A functions, file locks)."""

    settings: Settings
    database: Database
    corpus: CorpusInfo
    model_version: str


@pytest.fixture
def sqlite_catalog(
    sqlite_settings: Settings, corpus: CorpusInfo, dims: tuple[int, int]
) -> Iterator[SqliteCatalog]:
    from recsys.db import open_database

    database = open_database(sqlite_settings)
    ingest(sqlite_settings, database, [corpus.manifest])
    version = make_model(sqlite_settings, database, dims)
    yield SqliteCatalog(sqlite_settings, database, corpus, version)
    database.dispose()
