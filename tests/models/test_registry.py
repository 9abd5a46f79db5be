"""Model versions: save, load (safetensors), activate exactly one, and the models CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys.db import Database
from recsys.features import FeatureError, VideoFeatures
from recsys.features.content import ContentExtractor
from recsys.models import (
    FusionModel,
    ModelConfig,
    ModelNotFound,
    activate_model,
    list_models,
    load_embedder,
    save_model,
)
from recsys.models.registry import CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, ModelLoadError
from recsys.settings import Settings
from tests.disk_log import record_disk_ops
from tests.models.test_fusion import _features


def _trained_like(seed: int) -> FusionModel:
    torch.manual_seed(seed)
    config = ModelConfig(fusion="late", dim=12, hidden=16, visual_dim=20, audio_dim=14)
    return FusionModel(config)


def test_save_load_and_activate(settings: Settings, database: Database) -> None:
    with pytest.raises(ModelNotFound, match="no active model"):
        load_embedder(settings, database)
    first = save_model(settings, database, _trained_like(0), metrics={"recall@10": 0.5})
    assert save_model(settings, database, _trained_like(0)) == first  # same weights, same id
    second = save_model(settings, database, _trained_like(1), activate=True)
    assert first != second
    assert (settings.models_dir / second / "model.safetensors").is_file()

    embedder = load_embedder(settings, database)
    assert embedder.version == second
    assert (embedder.extractor, embedder.extractor_version, embedder.dim) == (
        "content",
        ContentExtractor.version,  # the default config follows the installed extractor
        12,
    )
    features = _features(4, audio_every=2)
    vectors, per = embedder.embed(features)
    assert vectors.shape == (4, 12) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert per["visual"].shape == (4, 12) and not per["audio"][1].any()
    again, _ = load_embedder(settings, database, second).embed(features)
    np.testing.assert_allclose(vectors, again, rtol=1e-6)

    activate_model(database, first)
    rows = list_models(database)
    assert [r["version"] for r in rows if r["is_active"]] == [first]
    assert next(r for r in rows if r["version"] == first)["metrics"] == {"recall@10": 0.5}
    with pytest.raises(ModelNotFound, match="nope"):
        activate_model(database, "nope")

    wrong = VideoFeatures("cnn", "cnn-1", np.zeros(3, np.float32), np.zeros((1, 3), np.float32))
    with pytest.raises(FeatureError, match="cnn-1"):
        embedder.embed([wrong])


def test_models_cli(settings: Settings, database: Database) -> None:
    version = save_model(settings, database, _trained_like(2))
    home = str(settings.resolved_home)
    runner = CliRunner(env={"RECSYS_DATABASE_URL": settings.database_url or ""})
    listed = runner.invoke(app, ["models", "list", "--home", home, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["version"] for r in json.loads(listed.stdout)] == [version]
    assert runner.invoke(app, ["models", "activate", version, "--home", home]).exit_code == 0
    assert [r["is_active"] for r in list_models(database)] == [True]
    missing = runner.invoke(app, ["models", "activate", "nope", "--home", home])
    assert missing.exit_code == 1 and "nope" in missing.output
    table = runner.invoke(app, ["models", "list", "--home", home])
    assert table.exit_code == 0 and version[:8] in table.output


def test_model_files_are_durable_before_the_version_is_registered(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with record_disk_ops(monkeypatch) as log:
        version = save_model(settings, database, _trained_like(3))
    directory = settings.models_dir / version
    renamed, tmp = log.replace_into(directory)
    for name in (WEIGHTS_FILE, CONFIG_FILE, METRICS_FILE):
        assert log.position("fsync", os.path.join(tmp, name)) < renamed
    synced_parent = log.assert_published_durably(directory)  # the temp dir, then models/
    log.assert_committed_after(synced_parent, directory)  # the row only once all is on disk
    assert not [p.name for p in settings.models_dir.iterdir() if p.name.startswith(".")]

    # the loader still refuses damaged files, with the directory and what to do
    weights = directory / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ModelLoadError, match="damaged") as damaged:
        load_embedder(settings, database, version)
    assert str(directory) in str(damaged.value) and "recsys models list" in str(damaged.value)


def test_embed_in_large_passes_equals_the_model_on_each_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Vector inputs go through the model in passes of VECTOR_PASS videos, written in place:
    the same vectors as the model gives each small batch, and an empty input stays shaped."""
    import recsys.models.registry as registry_module
    from recsys.models import Embedder
    from recsys.models.inputs import build_inputs

    model = _trained_like(3).eval()
    embedder = Embedder("v", model, torch.device("cpu"), batch_size=2)
    features = _features(7, audio_every=3)
    expected_fused: list[np.ndarray] = []
    expected_per: dict[str, list[np.ndarray]] = {"visual": [], "audio": []}
    with torch.inference_mode():
        for start in range(0, 7, 2):
            inputs = build_inputs(model.config, features[start : start + 2])
            fused, per = model.embed_with_modalities(inputs)
            expected_fused.append(fused.numpy())
            for name in expected_per:
                expected_per[name].append(per[name].numpy())
    for size in (3, 4096):
        monkeypatch.setattr(registry_module, "VECTOR_PASS", size)
        vectors, modalities = embedder.embed(features)
        assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
        np.testing.assert_allclose(vectors, np.concatenate(expected_fused), atol=1e-6)
        for name, parts in expected_per.items():
            np.testing.assert_allclose(modalities[name], np.concatenate(parts), atol=1e-6)
    empty, per_empty = embedder.embed([])
    assert empty.shape == (0, 12) and per_empty["audio"].shape == (0, 12)


def test_pooled_inputs_refuse_rows_of_different_sizes() -> None:
    from recsys.models.inputs import build_inputs

    config = _trained_like(0).config
    features = _features(2, audio_every=1)
    features[1].visual = features[1].visual[:-1]
    with pytest.raises(ValueError, match="different shapes"):
        build_inputs(config, features)
