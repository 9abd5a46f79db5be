"""run_refresh end to end on a tiny real corpus (SQLite and PostgreSQL)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from recsys.catalog import embedding_counts, get_model
from recsys.db import Database
from recsys.db.models import Video, VideoStatus
from recsys.refresh import RefreshOptions, run_refresh
from recsys.settings import Settings, load_settings
from recsys.store import EmbeddingStore
from recsys.synth import CorpusInfo
from tests.refresh.conftest import SqliteCatalog
from tests.refresh.helpers import (
    CRASH_VIDEO,
    MALFORMED_VIDEO,
    crash_on_one_video,
    embedding_rows,
    ingest,
    make_model,
    malformed_features_for_one_video,
    oracle,
    orphan_files,
    stored,
)

OPTIONS = {"workers": 2, "batch_size": 5, "progress": False}


def _counts(database: Database, version: str) -> dict[str, int | str]:
    with database.session() as session:
        model = get_model(session, version)
        assert model is not None
        return embedding_counts(session, model).as_dict()


def _status(database: Database, video_id: str) -> tuple[str, str | None]:
    with database.session() as session:
        video = session.scalars(select(Video).where(Video.video_id == video_id)).one()
        return video.status, video.status_reason


def test_first_refresh_embeds_every_video_once_and_matches_direct_embedding(
    settings: Settings,
    database: Database,
    catalog: CorpusInfo,
    model_version: str,
    files: dict[str, Path],
) -> None:
    summary = run_refresh(settings, database, RefreshOptions(**OPTIONS))  # type: ignore[arg-type]

    assert summary.model_version == model_version
    assert (summary.selected, summary.embedded, summary.decoded) == (12, 12, 12)
    assert (summary.failed, summary.cache_hits, summary.batches) == (0, 0, 3)
    assert summary.videos_per_s > 0 and summary.stage_seconds["features"] > 0
    assert embedding_rows(database, model_version) == (12, 12)
    assert _counts(database, model_version) == {
        "model_version": model_version,
        "embedded": 12,
        "outdated": 0,
        "missing": 0,
        "failed": 0,
    }
    vectors = stored(settings, database, model_version)
    expected = oracle(settings, database, model_version, files)
    assert sorted(vectors) == sorted(expected)
    for name, vector in vectors.items():
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(vector, expected[name], atol=1e-5)
    with database.session() as session:
        matrix = EmbeddingStore(settings).load(session, model_version, with_modalities=True)
    assert set(matrix.modalities) == {"visual", "audio"}
    assert matrix.modalities["visual"].shape == (12, 32)

    again = run_refresh(settings, database, RefreshOptions(**OPTIONS))  # type: ignore[arg-type]
    assert (again.selected, again.embedded, again.decoded) == (0, 0, 0)
    assert embedding_rows(database, model_version) == (12, 12)
    assert orphan_files(settings, database, model_version) == []


def test_new_model_version_reuses_cached_features_beside_the_old_one(
    settings: Settings,
    database: Database,
    catalog: CorpusInfo,
    model_version: str,
    dims: tuple[int, int],
    files: dict[str, Path],
) -> None:
    run_refresh(settings, database, RefreshOptions(**OPTIONS))  # type: ignore[arg-type]
    before = stored(settings, database, model_version)
    new_version = make_model(settings, database, dims, seed=1, activate=False)
    assert new_version != model_version

    summary = run_refresh(
        settings,
        database,
        RefreshOptions(model_version=new_version, **OPTIONS),  # type: ignore[arg-type]
    )

    assert (summary.embedded, summary.cache_hits, summary.decoded) == (12, 12, 0)
    assert summary.stage_seconds["features"] == 0.0
    after_new = stored(settings, database, new_version)
    expected = oracle(settings, database, new_version, files)
    for name, vector in after_new.items():
        np.testing.assert_allclose(vector, expected[name], atol=1e-5)
    # The old version is untouched, still active, and nothing under indexes/ was written.
    after_old = stored(settings, database, model_version)
    assert sorted(after_old) == sorted(before)
    for name in before:
        np.testing.assert_array_equal(after_old[name], before[name])
    with database.session() as session:
        active = get_model(session)
        assert active is not None and active.version == model_version
    assert list(settings.indexes_dir.iterdir()) == []
    assert (settings.embeddings_dir / model_version).is_dir()
    assert (settings.embeddings_dir / new_version).is_dir()


def test_failed_video_stays_local_and_is_retried_only_on_request(
    settings: Settings,
    database: Database,
    corpus: CorpusInfo,
    model_version: str,
    tmp_path: Path,
) -> None:
    copy = tmp_path / "corpus"
    shutil.copytree(corpus.out_dir, copy)
    ingest(settings, database, [copy / corpus.manifest.name])
    broken = copy / corpus.videos[4].file
    original = broken.read_bytes()
    broken.write_bytes(b"\x00not a video" * 100)
    bad_id = corpus.videos[4].video_id

    summary = run_refresh(settings, database, RefreshOptions(**OPTIONS))  # type: ignore[arg-type]

    assert (summary.embedded, summary.failed) == (11, 1)
    assert summary.failures[0].video_id == bad_id
    status, reason = _status(database, bad_id)
    assert status == VideoStatus.FAILED.value
    assert reason and broken.name in reason
    assert _counts(database, model_version)["failed"] == 1
    assert bad_id not in stored(settings, database, model_version)

    # Without --retry-failed the failure is left alone, even once the file is fixed.
    broken.write_bytes(original)
    skipped = run_refresh(settings, database, RefreshOptions(**OPTIONS))  # type: ignore[arg-type]
    assert skipped.selected == 0
    assert _status(database, bad_id)[0] == VideoStatus.FAILED.value

    retried = run_refresh(
        settings,
        database,
        RefreshOptions(retry_failed=True, **OPTIONS),  # type: ignore[arg-type]
    )
    assert (retried.selected, retried.embedded, retried.failed) == (1, 1, 0)
    assert _status(database, bad_id) == (VideoStatus.READY.value, None)
    assert bad_id in stored(settings, database, model_version)
    assert embedding_rows(database, model_version) == (12, 12)
    assert _counts(database, model_version)["failed"] == 0


def test_decode_time_limit_fails_the_video_with_its_reason(sqlite_catalog: SqliteCatalog) -> None:
    settings, database, corpus = (
        sqlite_catalog.settings,
        sqlite_catalog.database,
        sqlite_catalog.corpus,
    )
    strict = load_settings(settings.home, decode_timeout_s=1e-6)
    target = corpus.videos[0].video_id

    summary = run_refresh(
        strict,
        database,
        RefreshOptions(video_ids=[target], **OPTIONS),  # type: ignore[arg-type]
    )

    assert (summary.selected, summary.failed, summary.embedded) == (1, 1, 0)
    status, reason = _status(database, target)
    assert status == VideoStatus.FAILED.value
    assert reason and "time limit" in reason


@pytest.mark.parametrize(
    ("feature_fn", "video", "reason"),
    [
        (crash_on_one_video, CRASH_VIDEO, "worker process crashed"),
        (malformed_features_for_one_video, MALFORMED_VIDEO, "the model could not embed it"),
    ],
    ids=["worker-crash", "model-rejects"],
)
def test_a_video_that_breaks_a_stage_fails_alone(
    sqlite_catalog: SqliteCatalog, feature_fn: object, video: str, reason: str
) -> None:
    settings, database = sqlite_catalog.settings, sqlite_catalog.database

    summary = run_refresh(
        settings,
        database,
        RefreshOptions(feature_fn=feature_fn, **OPTIONS),  # type: ignore[arg-type]
    )

    assert (summary.embedded, summary.failed) == (11, 1)
    status, stored_reason = _status(database, video)
    assert status == VideoStatus.FAILED.value
    assert stored_reason and stored_reason.startswith(reason)
    embedded = stored(settings, database, sqlite_catalog.model_version)
    assert len(embedded) == 11 and video not in embedded


def test_changed_file_is_re_embedded_in_place(
    settings: Settings,
    database: Database,
    corpus: CorpusInfo,
    model_version: str,
    tmp_path: Path,
) -> None:
    copy = tmp_path / "corpus"
    shutil.copytree(corpus.out_dir, copy)
    ingest(settings, database, [copy / corpus.manifest.name])
    run_refresh(settings, database, RefreshOptions(**OPTIONS))  # type: ignore[arg-type]
    changed = corpus.videos[1]
    shutil.copyfile(copy / corpus.videos[2].file, copy / changed.file)
    ingest(settings, database, [copy / corpus.manifest.name])
    assert _status(database, changed.video_id)[0] == VideoStatus.STALE.value
    # The video is stale (its file changed), so its embedding is outdated.
    assert _counts(database, model_version)["outdated"] == 1

    summary = run_refresh(settings, database, RefreshOptions(**OPTIONS))  # type: ignore[arg-type]

    assert (summary.selected, summary.embedded, summary.decoded) == (1, 1, 0)  # same content
    assert _status(database, changed.video_id)[0] == VideoStatus.READY.value
    counts = _counts(database, model_version)
    assert (counts["embedded"], counts["outdated"]) == (12, 0)
    assert embedding_rows(database, model_version) == (12, 12)
    vectors = stored(settings, database, model_version)
    np.testing.assert_allclose(
        vectors[changed.video_id], vectors[corpus.videos[2].video_id], atol=1e-6
    )


def test_video_id_selection_embeds_only_those(sqlite_catalog: SqliteCatalog) -> None:
    settings, database, corpus = (
        sqlite_catalog.settings,
        sqlite_catalog.database,
        sqlite_catalog.corpus,
    )
    version = sqlite_catalog.model_version
    wanted = [corpus.videos[0].video_id, corpus.videos[5].video_id]

    summary = run_refresh(
        settings,
        database,
        RefreshOptions(video_ids=wanted, **OPTIONS),  # type: ignore[arg-type]
    )

    assert summary.embedded == 2
    assert sorted(stored(settings, database, version)) == sorted(wanted)
    assert _counts(database, version)["missing"] == 10


def test_second_concurrent_run_for_the_same_model_is_refused(
    sqlite_settings: Settings, corpus: CorpusInfo, dims: tuple[int, int]
) -> None:
    from recsys.db import open_database
    from recsys.errors import UserError
    from recsys.file_lock import exclusive
    from recsys.refresh import RefreshError

    database = open_database(sqlite_settings)
    version = make_model(sqlite_settings, database, dims)
    lock = sqlite_settings.embeddings_dir / f".{version}.lock"
    with (
        exclusive(lock, optional=False),  # what a running `recsys embed` holds
        pytest.raises(RefreshError, match="another `recsys embed`") as caught,
    ):
        run_refresh(sqlite_settings, database, RefreshOptions(progress=False))
    assert isinstance(caught.value, UserError) and isinstance(caught.value, RuntimeError)
    assert run_refresh(sqlite_settings, database, RefreshOptions(progress=False)).selected == 0
    database.dispose()


def test_progress_reports_on_a_terminal_and_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from recsys.progress import Progress

    with Progress("embed v1", 3, unit="videos", bar=True, failures=True, verb="embed") as bar:
        bar.advance(2, cache_hits=1)
        bar.advance(1, failed=1)
    assert (bar.done, bar.failed, bar.cache_hits) == (3, 1, 1)
    with (
        caplog.at_level(logging.INFO),
        Progress("embed v2", 2, unit="videos", bar=False, failures=True, verb="embed") as log,
    ):
        log.advance(2)
    assert "embed v2: 2 videos to embed" in caplog.text
    assert "embed v2: 2/2 videos in" in caplog.text and "s, 0 failed" in caplog.text
