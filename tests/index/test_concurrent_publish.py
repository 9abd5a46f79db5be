"""Publishing under one lock: concurrent builds take turns, the pointer always names a complete
version, and an automatic publish never serves older embeddings than the served index (an
explicit ``activate`` still rolls back)."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from index import (
    BuildOptions,
    IndexActivationError,
    StaleIndexBuild,
    activate_index,
    build_index,
    list_indexes,
    load_index,
    read_manifest,
)
from index.build import build_from_vectors
from index.manifest import INDEX_FILE, MANIFEST_FILE
from orchestration.cli.main import app
from recsys.db import Database, open_database
from recsys.errors import ConflictError, UserError
from recsys.index_pointer import (
    LOCK_FILE,
    POINTER_FILE,
    PublishLockTimeout,
    publish_lock,
    read_pointer,
)
from recsys.settings import Settings, load_settings
from tests.disk_log import record_disk_ops
from tests.index.catalog import make_catalog

DIM = 16
OPTIONS = BuildOptions(kind="flat", gpu="off")
SPAWN = multiprocessing.get_context("spawn")  # no forked faiss/OpenMP or SQLAlchemy state


def _child_settings(home: str, url: str | None) -> tuple[Settings, Database]:
    settings = load_settings(home, database_url=url) if url else load_settings(home)
    return settings, open_database(settings)


def _publish_rounds(home: str, url: str | None, rounds: int, barrier: Any, out: Any) -> None:
    """Child: build and publish ``rounds`` times, starting each round with the other child."""
    settings, database = _child_settings(home, url)
    outcomes = []
    try:
        for _ in range(rounds):
            barrier.wait(timeout=60)
            try:
                result = build_index(settings, database, OPTIONS)
                outcomes.append(("published", result.version))
            except StaleIndexBuild as stale:
                outcomes.append(("superseded", stale.version))
    except Exception as error:  # noqa: BLE001 - reported to the parent, which fails the test
        outcomes.append(("error", f"{type(error).__name__}: {error}"))
    finally:
        database.dispose()
    out.put(outcomes)


def _activate_when_told(home: str, url: str | None, version: str, started: Any) -> None:
    """Child: activate ``version`` (blocks while the parent holds the publish lock)."""
    settings, database = _child_settings(home, url)
    started.set()
    activate_index(settings, database, version)
    database.dispose()


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {"RECSYS_DATABASE_URL": settings.database_url or "", "COLUMNS": "200"}
    result = CliRunner().invoke(app, [*args, "--home", str(settings.home)], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, " ".join(result.output.split())


def test_an_activation_waits_for_the_publish_lock(settings: Settings, database: Database) -> None:
    make_catalog(settings, database, 200, DIM)
    first = build_index(settings, database, OPTIONS)
    spare = build_index(settings, database, BuildOptions(kind="flat", gpu="off", publish=False))
    started = SPAWN.Event()
    child = SPAWN.Process(
        target=_activate_when_told,
        args=(str(settings.resolved_home), settings.database_url, spare.version, started),
    )
    with publish_lock(settings):
        child.start()
        assert started.wait(60), "the child never started"
        child.join(1.0)
        # the other process waits: the pointer cannot move while a publish is in progress
        assert child.is_alive() and read_pointer(settings) == first.version
    child.join(60)
    assert child.exitcode == 0
    assert read_pointer(settings) == spare.version


@pytest.mark.slow  # two spawned processes, three builds each: ~8 s
def test_two_processes_publishing_at_once_leave_a_complete_version(
    settings: Settings, database: Database
) -> None:
    make_catalog(settings, database, 300, DIM)
    rounds = 3
    barrier, out = SPAWN.Barrier(2), SPAWN.Queue()
    home = str(settings.resolved_home)
    env = {"RECSYS_INDEX_KEEP": "1"}  # clean-up after every publish deletes all it may
    children = [
        SPAWN.Process(
            target=_publish_rounds, args=(home, settings.database_url, rounds, barrier, out)
        )
        for _ in range(2)
    ]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        for child in children:
            child.start()
        results = [out.get(timeout=240) for _ in children]
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    outcomes = [outcome for result in results for outcome in result]
    assert not [o for o in outcomes if o[0] == "error"], outcomes
    assert len(outcomes) == 2 * rounds and any(kind == "published" for kind, _ in outcomes)

    served = read_pointer(settings)
    assert served is not None
    loaded = load_index(settings.indexes_dir / served)  # complete: manifest and checksum agree
    assert loaded.ntotal == 300
    # every build that still exists and any that was published is no newer than the served one
    entries = {entry["version"]: entry for entry in list_indexes(settings, database)}
    assert entries[served]["active"] and entries[served]["status"] == "published"
    as_of = read_manifest(settings.indexes_dir / served).embeddings_as_of
    assert as_of is not None
    for path in settings.indexes_dir.iterdir():
        if path.is_dir() and not path.name.startswith("."):
            other = read_manifest(path).embeddings_as_of
            assert other is not None and other <= as_of
    # no temporary pointer or build directory is left behind
    assert not [p.name for p in settings.indexes_dir.glob(".*.tmp")]
    assert (settings.indexes_dir / POINTER_FILE).read_text().strip() == served


def test_an_older_build_is_not_published_over_newer_data_but_rollback_works(
    settings: Settings, database: Database
) -> None:
    ids, vectors = make_catalog(settings, database, 300, DIM)
    first = build_index(settings, database, OPTIONS)
    second = build_index(settings, database, OPTIONS)
    assert read_pointer(settings) == second.version

    # a build that read the embeddings before `second` did, finishing after it
    earlier = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(StaleIndexBuild) as refused:
        build_from_vectors(settings, database, "m1", ids, vectors, OPTIONS, snapshot_at=earlier)
    stale = refused.value.version
    message = str(refused.value)
    assert isinstance(refused.value, UserError)
    assert "older than those of the served index" in message and second.version in message
    assert f"recsys index activate {stale} --force" in message
    assert read_pointer(settings) == second.version  # the served index is unchanged
    entries = {entry["version"]: entry for entry in list_indexes(settings, database)}
    assert entries[stale]["status"] == "superseded" and entries[stale]["on_disk"]

    # activating the superseded build needs --force; a plain rollback does not
    with pytest.raises(IndexActivationError, match="--force"):
        activate_index(settings, database, stale)
    code, output = _cli(settings, "index", "activate", stale)
    assert code == 1 and "--force" in output and read_pointer(settings) == second.version
    code, output = _cli(settings, "index", "activate", first.version)
    assert code == 0, output
    assert json.loads(output[output.index("{") :])["version"] == first.version
    assert read_pointer(settings) == first.version
    code, output = _cli(settings, "index", "activate", stale, "--force")
    assert code == 0, output
    assert read_pointer(settings) == stale

    # a new build reads the embeddings now: newer than anything served, so it is published
    third = build_index(settings, database, OPTIONS)
    assert third.published and read_pointer(settings) == third.version


def test_publish_lock_is_reentrant_released_and_times_out(sqlite_settings: Settings) -> None:
    settings = sqlite_settings
    lock = settings.indexes_dir / LOCK_FILE
    with publish_lock(settings), publish_lock(settings):
        assert lock.is_file() and f"pid {os.getpid()}" in lock.read_text()
    # released: another open file description takes it at once, and a waiter then gives up
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        started = time.monotonic()
        with (
            pytest.raises(PublishLockTimeout, match="held") as waited,
            publish_lock(settings, timeout_s=0.3),
        ):
            pass
        assert 0.3 <= time.monotonic() - started < 5
        assert isinstance(waited.value, ConflictError) and str(lock) in str(waited.value)
    finally:
        os.close(fd)  # closing the description releases it
    with publish_lock(settings, timeout_s=5):
        pass


def test_a_version_directory_and_the_pointer_are_durable(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_catalog(settings, database, 200, DIM)
    with record_disk_ops(monkeypatch) as log:
        built = build_index(settings, database, OPTIONS)
    directory = settings.indexes_dir / built.version
    renamed, tmp = log.replace_into(directory)
    assert log.position("fsync", os.path.join(tmp, INDEX_FILE)) < renamed
    assert log.assert_published_durably(os.path.join(tmp, MANIFEST_FILE)) < renamed
    synced_root = log.assert_published_durably(directory)  # the temp dir itself, then indexes/
    log.assert_committed_after(synced_root, directory)  # recorded only once it is on disk
    pointer = settings.indexes_dir / POINTER_FILE
    log.assert_published_durably(pointer)
    _, pointer_tmp = log.replace_into(pointer)
    assert os.path.basename(pointer_tmp) != f"{POINTER_FILE}.tmp"  # a unique temporary name
