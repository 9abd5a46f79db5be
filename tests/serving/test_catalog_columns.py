"""The catalog snapshot is read in bulk into columns, costs a few dozen bytes
per video, and is refreshed in place when only metadata changed."""

from __future__ import annotations

import json
import math
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

import serving.catalog as catalog_cache
from index.mapped import is_mapped
from recsys.db import Database
from recsys.db.models import Video
from serving.catalog import load_catalog, refreshed_or_loaded, snapshot_bytes
from serving.columns import IdColumn, StringColumn
from tests.processes import run_together
from tests.serving.catalog import TinyCatalog


def test_columns_hold_every_row_as_the_database_does(
    catalog: TinyCatalog, database: Database
) -> None:
    with database.session() as session:
        snapshot = load_catalog(session)
        rows = session.execute(select(Video).order_by(Video.id)).scalars().all()
        assert len(snapshot) == len(rows)
        for position, video in enumerate(rows):
            info = snapshot.info(position)
            assert snapshot.position(video.video_id) == position
            assert info.video_key == video.id and info.video_id == video.video_id
            assert info.title == video.title and info.category == video.category
            assert info.status == video.status and info.status_reason == video.status_reason
            assert info.has_thumbnail == bool(video.thumbnail_path)
            if video.duration_s is None:
                assert info.duration is None
            else:
                assert math.isclose(info.duration or 0.0, video.duration_s)
    assert snapshot.position("no-such-video") is None and snapshot.position("") is None
    assert snapshot.position("v0" * 50) is None
    per_video = snapshot_bytes(snapshot) / len(snapshot)
    assert per_video < 120  # keys, codes, durations, flags, dense map, ids and titles


def test_string_and_id_columns() -> None:
    titles = StringColumn.join([StringColumn.encode(["a", None, "été"]), StringColumn.encode([""])])
    assert [titles[i] for i in range(4)] == ["a", None, "été", ""] and len(titles) == 4
    titles[1] = "now set"
    assert titles[1] == "now set" and titles[-1] == ""
    ids = IdColumn.join([IdColumn.encode(["b", "a"]), IdColumn.encode(["ccc"])])
    assert [ids.get(v) for v in ("a", "b", "ccc", "cc", "d")] == [1, 0, 2, None, None]
    assert list(ids) == ["b", "a", "ccc"]
    ordered = IdColumn(np.array([b"a", b"b"]))
    assert ordered.get("b") == 1 and ordered.nbytes == 2


def test_only_metadata_changed_keeps_the_snapshot(catalog: TinyCatalog, database: Database) -> None:
    with database.session() as session:
        first = load_catalog(session)
    with database.session() as session:
        video = session.scalars(select(Video).where(Video.video_id == "v003")).one()
        video.title = "Renamed clip"
    with database.session() as session:
        again = refreshed_or_loaded(session, first)
    assert again is first and again.info(again.position("v003") or 0).title == "Renamed clip"
    with database.session() as session:
        session.add(Video(video_id="added-later", uri="/x/added.mp4", title="new"))
    with database.session() as session:
        reloaded = refreshed_or_loaded(session, first)
    assert reloaded is not first and reloaded.position("added-later") == len(reloaded) - 1


def test_a_refresh_reads_only_rows_changed_since_the_last_check(
    catalog: TinyCatalog, database: Database
) -> None:
    with database.session() as session:
        snapshot = load_catalog(session)
    assert snapshot.watermark is not None and snapshot.checked_at is not None
    # as if the snapshot was read 3 s after the last write: nothing is read again
    snapshot.checked_at = snapshot.watermark + timedelta(seconds=3)
    with database.session() as session:
        assert snapshot.refresh(session) == 0
        video = session.scalars(select(Video).where(Video.video_id == "v007")).one()
        video.title = "Edited later"
    with database.session() as session:
        assert snapshot.refresh(session) >= 1  # the edit (and rows within the overlap)
    assert snapshot.info(snapshot.position("v007") or 0).title == "Edited later"


def test_shared_columns_are_mapped_once_and_answer_like_private_ones(
    catalog: TinyCatalog, database: Database, tmp_path: Path
) -> None:
    """Keys, ids and titles written once and mapped read-only: every worker with the same
    catalog maps the same files (one copy in the page cache), and answers as before."""
    with database.session() as session:
        session.add(Video(video_id="a-sorts-first", uri="/x/a.mp4", title="ids out of order"))
    shared = tmp_path / "catalog"
    with database.session() as session:
        private = load_catalog(session)
        one = load_catalog(session, shared)
        two = load_catalog(session, shared)
    assert len(list(shared.iterdir())) == 1  # the second load found the first one's files
    for snapshot in (one, two):
        assert is_mapped(snapshot.video_keys)
        assert not snapshot.video_keys.flags.writeable
        assert len(snapshot) == len(private)
        for position in range(len(private)):
            assert snapshot.info(position) == private.info(position)
            video_id = private.info(position).video_id
            assert snapshot.position(video_id) == position
        assert snapshot.position("no-such-video") is None
    with database.session() as session:  # a metadata refresh edits a mapped title
        video = session.scalars(select(Video).where(Video.video_id == "v003")).one()
        video.title = "Renamed while mapped"
    with database.session() as session:
        assert refreshed_or_loaded(session, one, shared) is one
    assert one.info(one.position("v003") or 0).title == "Renamed while mapped"
    assert two.info(two.position("v003") or 0).title != "Renamed while mapped"  # its own overlay


def test_a_starting_worker_reads_only_what_changed_since_the_saved_snapshot(
    catalog: TinyCatalog, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first worker's full read is saved beside the shared columns; a worker that starts
    on the same set of videos maps it and applies only the rows changed since, with the same
    answers as a full read. A new video (the set changed) or a damaged save: full read."""
    shared = tmp_path / "catalog"
    with database.session() as session:
        first = refreshed_or_loaded(session, None, shared)
    assert first.checked_at is not None
    columns_dir = next(p for p in shared.iterdir() if p.is_dir())
    state = json.loads((columns_dir / "state.json").read_text())
    with database.session() as session:
        video = session.scalars(select(Video).where(Video.video_id == "v004")).one()
        video.title, video.status, video.status_reason = "Edited after", "failed", "bad file"
    full_reads: list[int] = []
    real = catalog_cache.read_columns

    def counting(*args: Any, **kwargs: Any) -> Any:
        full_reads.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(catalog_cache, "read_columns", counting)
    with database.session() as session:
        started = refreshed_or_loaded(session, None, shared)
        private = load_catalog(session)
    assert full_reads == [1]  # the private reference only
    assert is_mapped(started.video_keys) and started.status.flags.writeable
    assert len(started) == len(private)
    for position in range(len(private)):
        assert started.info(position) == private.info(position)
    edited = started.info(started.position("v004") or 0)
    assert (edited.title, edited.status, edited.status_reason) == (
        "Edited after",
        "failed",
        "bad file",
    )
    assert not started.is_servable(started.position("v004") or 0)

    full_reads.clear()
    (columns_dir / state["arrays"]).write_bytes(b"damaged")
    with database.session() as session:
        refreshed_or_loaded(session, None, shared)
    assert full_reads == [1]
    full_reads.clear()
    with database.session() as session:
        session.add(Video(video_id="added-later", uri="/x/added.mp4", title="new"))
    with database.session() as session:
        grown = refreshed_or_loaded(session, None, shared)
    assert full_reads == [1] and grown.position("added-later") == len(grown) - 1


def _start_worker(database: Database, shared: str, log: str) -> None:
    """A starting worker (forked) whose full read of the table is slow and logged."""
    database.engine.dispose(close=False)  # this process's own connections
    real = catalog_cache.read_columns

    def slow(*args: Any, **kwargs: Any) -> Any:
        with open(log, "a") as handle:
            handle.write("full read\n")
        time.sleep(0.5)
        return real(*args, **kwargs)

    catalog_cache.read_columns = slow  # type: ignore[assignment] # this child process only
    with database.session() as session:
        snapshot = refreshed_or_loaded(session, None, Path(shared))
    assert snapshot.position("v004") is not None


def test_workers_starting_together_read_the_table_once(
    catalog: TinyCatalog, database: Database, tmp_path: Path
) -> None:
    log = tmp_path / "reads.log"
    codes = run_together(_start_worker, (database, str(tmp_path / "catalog"), str(log)))
    assert codes == [0, 0, 0]
    assert log.read_text().count("full read") == 1


def test_a_row_written_by_a_lagging_writer_is_refreshed(
    catalog: TinyCatalog, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer whose clock runs a minute behind the API's marks a video failed after the API's
    last check: the refresh still sees it (the time a row changed is the database's)."""
    import recsys.db.models as models

    with database.session() as session:
        snapshot = load_catalog(session)
    real = models.datetime

    class LaggingClock(real):  # type: ignore[misc,valid-type]
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return real.now(tz) - timedelta(minutes=1)

    monkeypatch.setattr(models, "datetime", LaggingClock)
    with database.session() as session:
        video = session.scalars(select(Video).where(Video.video_id == "v005")).one()
        video.status, video.status_reason = "failed", "marked by a lagging writer"
    monkeypatch.setattr(models, "datetime", real)
    with database.session() as session:
        assert snapshot.refresh(session) >= 1
    assert not snapshot.is_servable(snapshot.position("v005") or 0)
