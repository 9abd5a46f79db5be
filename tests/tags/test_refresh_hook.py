"""A refresh tags what it embeds: new videos get their tags in the same run, and a tags model
that reads embeddings is refitted when the active model's embeddings change."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from recsys.db import Database, open_database
from recsys.db.models import TagPredictionState, Video
from recsys.models.registry import activate_model
from recsys.refresh import RefreshOptions, run_refresh
from recsys.settings import Settings
from recsys.synth import generate_corpus
from recsys.tags import Source, current_tags_version, load_tag_model
from tests.refresh.helpers import ingest, make_model
from training.tags import TagsOptions, train_tags

OPTIONS: dict[str, Any] = {"workers": 2, "batch_size": 8, "progress": False}


@pytest.fixture
def home(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Database, Path]]:
    """18 videos of 3 topics, on SQLite and on PostgreSQL."""
    corpus = generate_corpus(tmp_path / "c", 18, 3, 1.0, seed=11, width=64, height=48)
    database = open_database(settings)
    ingest(settings, database, [corpus.manifest])
    with database.session() as session:  # a third of the videos lose their category
        hidden = [v.video_id for v in corpus.videos][::3]
        session.execute(update(Video).where(Video.video_id.in_(hidden)).values(category=None))
    yield settings, database, corpus.out_dir / corpus.videos[0].file
    database.dispose()


def _tagged(database: Database) -> dict[str, str]:
    with database.session() as session:
        rows = session.execute(
            select(Video.video_id, TagPredictionState.tags_model).join(
                TagPredictionState, TagPredictionState.video_key == Video.id
            )
        )
        return {video_id: model for video_id, model in rows}


def test_the_refresh_tags_new_videos_and_refits_an_embedding_model(
    home: tuple[Settings, Database, Path], tmp_path: Path
) -> None:
    settings, database, sample = home
    dims = feature_dims_of(sample)
    first = make_model(settings, database, dims, seed=0, activate=True)
    assert run_refresh(settings, database, RefreshOptions(**OPTIONS)).tags == {}  # no model

    train_tags(settings, database, TagsOptions(source=Source.EMBEDDING, workers=2))
    model = load_tag_model(settings)
    assert (model.source, model.model_version) == (Source.EMBEDDING, first)
    assert set(_tagged(database).values()) == {model.version} and len(_tagged(database)) == 18

    # A new video arrives: the refresh embeds it and tags it, and only it.
    extra = generate_corpus(tmp_path / "more", 2, 3, 1.0, seed=12, width=64, height=48)
    newcomer = shutil.copy(extra.out_dir / extra.videos[0].file, tmp_path / "newcomer.mp4")
    ingest(settings, database, [Path(newcomer)])
    summary = run_refresh(settings, database, RefreshOptions(**OPTIONS))
    assert summary.embedded == 1
    assert (summary.tags["predicted"], summary.tags["up_to_date"]) == (1, 18)
    assert len(_tagged(database)) == 19

    # A new model is embedded beside the active one: tags follow the active model only.
    second = make_model(settings, database, dims, seed=1, activate=False)
    aside = run_refresh(settings, database, RefreshOptions(model_version=second, **OPTIONS))
    assert "skipped" in aside.tags and current_tags_version(settings) == model.version
    # Once it is active, re-embedding refits the tags model on its embeddings and re-tags all.
    activate_model(database, second)
    summary = run_refresh(settings, database, RefreshOptions(model_version=second, **OPTIONS))
    refitted = load_tag_model(settings)
    assert summary.tags["refitted_from"] == model.version
    assert refitted.model_version == second and refitted.version != model.version
    assert set(_tagged(database).values()) == {refitted.version}


def feature_dims_of(sample: Path) -> tuple[int, int]:
    from recsys.features import get_extractor
    from recsys.media import decode_video
    from recsys.models import input_dims

    return input_dims([get_extractor("content").extract(decode_video(sample))])
