"""`recsys embed` end to end with real encoder architectures (random weights written here).

A tiny synthetic corpus (one-second videos, one in ten silent) is embedded by a model whose
stage A is ``visual=open_clip:…,audio=vggish`` and ``visual=torchvision-video:r2plus1d_18,
audio=panns:cnn14``; features are cached per modality, so changing only the audio encoder
re-uses every visual part.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sqlalchemy import select
from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys.db import open_database
from recsys.db.models import FeatureCacheEntry, Video
from recsys.features import FeatureError, get_extractor
from recsys.models import FusionModel, ModelConfig, save_model
from recsys.settings import Settings
from recsys.synth import CorpusInfo, generate_corpus
from tests.features import encoder_weights as ew
from tests.refresh.helpers import ingest

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusInfo:
    """6 one-second videos in 2 topics (one silent)."""
    return generate_corpus(tmp_path_factory.mktemp("enc") / "corpus", 6, 2, 1.0, seed=3)


def _model(settings: Settings, database, spec: str, visual_dim: int, audio_dim: int) -> str:
    extractor = get_extractor(spec, settings=settings)
    torch.manual_seed(0)
    config = ModelConfig(
        extractor=extractor.name,
        extractor_version=extractor.version,
        visual_dim=visual_dim,
        audio_dim=audio_dim,
        dim=16,
        hidden=32,
    )
    return save_model(settings, database, FusionModel(config), activate=True)


def _embed(settings: Settings, *args: str) -> dict:
    result = runner.invoke(
        app, ["embed", "--home", str(settings.resolved_home), "--workers", "2", "--json", *args]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _silent(corpus: CorpusInfo) -> set[str]:
    return {v.video_id for v in corpus.videos if not v.has_audio}


def test_embed_with_open_clip_and_vggish(sqlite_settings: Settings, corpus: CorpusInfo) -> None:
    settings = sqlite_settings
    ew.install_clip(settings)
    ew.install_vggish(settings)
    database = open_database(settings)
    ingest(settings, database, [corpus.manifest])
    spec = f"visual=open_clip:{ew.TINY_CLIP},audio=vggish"
    _model(settings, database, spec, 64, 256)

    summary = _embed(settings)
    assert (summary["embedded"], summary["failed"]) == (6, 0), summary["failures"]

    # Change only the audio encoder: every visual part comes from the cache.
    filled = _embed(settings, "--extractor", f"visual=open_clip:{ew.TINY_CLIP},audio=content")
    assert filled["computed"] == 6 and filled["reused_parts"]["visual"] == 6
    with database.session() as session:
        keys = set(session.execute(select(FeatureCacheEntry.extractor)).scalars())
    assert keys == {f"visual=open_clip:{ew.TINY_CLIP}", "audio=vggish", "audio=content"}
    database.dispose()


def test_embed_with_r2plus1d_clips_and_panns(sqlite_settings: Settings, corpus: CorpusInfo) -> None:
    settings = sqlite_settings
    ew.install_video(settings, "r2plus1d_18")
    ew.install_cnn14(settings)
    database = open_database(settings)
    ingest(settings, database, [corpus.manifest])
    spec = "visual=torchvision-video:r2plus1d_18,audio=panns:cnn14,clips=2,clip_frames=4"
    _model(settings, database, spec, 1024, 4096)

    summary = _embed(settings)
    assert (summary["embedded"], summary["failed"]) == (6, 0), summary["failures"]
    extractor = get_extractor(spec, settings=settings)
    from recsys.features import FeatureCache

    with database.session() as session:
        hashes = dict(session.execute(select(Video.video_id, Video.content_hash)).all())
    cached = FeatureCache(settings, database).get_many(hashes.values(), extractor)
    assert len(cached) == 6
    for video_id, content_hash in hashes.items():
        features = cached[content_hash]
        assert features.visual_seq.shape == (2, 512)
        assert features.audio_seq is None or features.audio_seq.shape[1] == 2048
        assert (features.audio is None) == (video_id in _silent(corpus))
    database.dispose()


def test_bad_inputs_fail_alone_with_the_file_or_video_named(
    sqlite_settings: Settings, corpus: CorpusInfo, tmp_path: Path
) -> None:
    """One-frame video for a clip model, audio shorter than a VGGish patch: clear errors."""
    from recsys.synth.writer import write_test_video

    settings = sqlite_settings
    ew.install_video(settings, "r2plus1d_18")
    ew.install_vggish(settings)
    ew.install_clip(settings)
    still = write_test_video(tmp_path / "still.mp4", frames=1, seconds=0.5, fps=2.0)
    database = open_database(settings)
    ingest(settings, database, [corpus.manifest, still])
    home = str(settings.resolved_home)
    clip_spec = "visual=torchvision-video:r2plus1d_18,audio=content,clips=1,clip_frames=4"
    result = runner.invoke(app, ["embed", "--home", home, "--json", "--extractor", clip_spec])
    assert result.exit_code == 1
    filled = json.loads(result.stdout)
    assert filled["computed"] == 6
    (failure,) = filled["failures"]
    assert (
        failure["video_id"] == "still"
        and "still.mp4 has a single decodable frame" in failure["reason"]
    )

    frame_spec = f"visual=open_clip:{ew.TINY_CLIP},audio=vggish"
    result = runner.invoke(app, ["embed", "--home", home, "--json", "--extractor", frame_spec])
    filled = json.loads(result.stdout)
    assert filled["computed"] == 6
    (failure,) = filled["failures"]
    assert (
        "video still" in failure["reason"] and "shorter than one VGGish patch" in failure["reason"]
    )
    database.dispose()


def test_the_papers_recipe_one_frame_per_second_and_a_catalog_pca(
    sqlite_settings: Settings, corpus: CorpusInfo
) -> None:
    """fps=1 samples ~1 frame per second; pca=N is fitted on the catalog by `embed --extractor`
    (raw rows cached, so refitting never re-runs the encoder) and joins the version."""
    settings = sqlite_settings
    ew.install_clip(settings)
    database = open_database(settings)
    ingest(settings, database, [corpus.manifest])
    raw_spec = f"visual=open_clip:{ew.TINY_CLIP},audio=content,fps=3"
    spec = f"{raw_spec},pca=4"
    with pytest.raises(FeatureError, match="fits it on the catalog"):
        get_extractor(spec, settings=settings)
    filled = _embed(settings, "--extractor", spec)
    assert filled["failed"] == 0 and filled["cache_hits"] == 6
    reduced, raw = (
        get_extractor(spec, settings=settings),
        get_extractor(raw_spec, settings=settings),
    )
    assert reduced.version != raw.version
    with database.session() as session:
        hashes = list(session.execute(select(Video.content_hash)).scalars())
    from recsys.features import FeatureCache

    cache = FeatureCache(settings, database)
    features = cache.get_many(hashes, reduced)
    assert {f.visual_seq.shape for f in features.values()} == {(3, 4)}  # 1 s videos at fps=3
    assert {f.visual_seq.shape for f in cache.get_many(hashes, raw).values()} == {(3, 32)}
    database.dispose()


def test_hand_made_encoders_as_a_spec_run_inside_the_decode_worker(
    sqlite_settings: Settings, corpus: CorpusInfo
) -> None:
    settings = sqlite_settings
    database = open_database(settings)
    ingest(settings, database, [corpus.manifest])
    filled = _embed(settings, "--extractor", "visual=content,audio=content")
    assert (filled["computed"], filled["failed"]) == (6, 0)
    again = _embed(settings, "--extractor", "visual=content,audio=content")
    assert (again["cache_hits"], again["computed"]) == (6, 0)
    database.dispose()


def test_train_and_embed_a_new_home_with_the_default_spec(
    sqlite_settings: Settings, corpus: CorpusInfo
) -> None:
    """No --extractor anywhere: a new home trains and embeds on EfficientNet-Lite0 (whose
    weights came with the package) and records that spec for its later runs."""
    from recsys.features.home_spec import recorded_spec
    from recsys.models import list_models
    from recsys.settings import setting_default

    home = ["--home", str(sqlite_settings.resolved_home)]
    # (No other setting changed here: the stage-A worker pool outlives a test and reads its
    # own environment.)
    cli = CliRunner(env={"RECSYS_FEATURE_EXTRACTOR": None})
    assert cli.invoke(app, ["ingest", str(corpus.manifest), *home]).exit_code == 0
    trained = cli.invoke(
        app, ["train", *home, "--pairs", "categories", "--epochs", "1", "--dim", "8", "--force"]
    )
    assert trained.exit_code == 0, trained.output
    default = setting_default("feature_extractor")
    assert default.startswith("visual=efficientnet-lite:lite0")
    assert recorded_spec(sqlite_settings) == default
    database = open_database(sqlite_settings)
    (model,) = list_models(database)
    assert model["extractor"] == default and model["is_active"]

    embedded = cli.invoke(app, ["embed", *home, "--json"])
    assert embedded.exit_code == 0, embedded.output
    summary = json.loads(embedded.stdout)
    assert (summary["embedded"], summary["failed"]) == (6, 0), summary["failures"]
    extractor = get_extractor(default, settings=sqlite_settings)
    with database.session() as session:
        keys = set(session.execute(select(FeatureCacheEntry.extractor)).scalars())
    assert keys == {"visual=efficientnet-lite:lite0", "audio=content"}
    assert extractor.visual.dim == 1280  # type: ignore[attr-defined]
    database.dispose()
