"""The model gate on a 35-video library: it holds out whole videos (every pair and label of
them), refuses a model worse than the content features on those never-seen videos or one whose
best epoch is the untrained model, activates the first good model of a home, and says how much
more a too-small library needs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys.db import Database
from recsys.features import VideoFeatures
from recsys.models import list_models, load_embedder
from recsys.settings import Settings
from recsys.synth import generate_corpus
from training import TrainConfig, TrainingData, train_model
from training.data import load_training_data
from training.errors import TrainingError
from training.gate import (
    MIN_HELD_OUT_PAIRS,
    MIN_HELD_OUT_VIDEOS,
    NO_EPOCH_BEAT,
    Evidence,
    evidence,
    gate_model,
    sizing_advice,
    split_validation,
)
from training.model_evaluation import embed_data
from training.run import HELD_OUT_FILE, WARM_FILE

CPU = torch.device("cpu")
VIDEOS = 35


def _cli(settings: Settings) -> tuple[CliRunner, list[str]]:
    env = {
        "RECSYS_DATABASE_URL": settings.database_url or "",
        "RECSYS_FRAMES_PER_VIDEO": "6",
        "RECSYS_FRAME_SIZE": "48",
        "COLUMNS": "250",
    }
    return CliRunner(env=env), ["--home", str(settings.resolved_home)]


@pytest.fixture
def home(settings: Settings, database: Database, tmp_path: Path) -> tuple[CliRunner, list[str]]:
    """A 35-video library of 4 topics, one second each, ingested with its co-watch pairs."""
    settings.frames_per_video, settings.frame_size = 6, 48
    corpus = generate_corpus(
        tmp_path / "corpus", videos=VIDEOS, topics=4, seconds=1.0, seed=3, width=64, height=48
    )
    runner, home = _cli(settings)
    ingest = ["ingest", str(corpus.manifest), "--related", str(corpus.cowatch), *home]
    assert runner.invoke(app, ingest).exit_code == 0
    return runner, home


def _active(database: Database) -> list[str]:
    return [m["version"] for m in list_models(database) if m["is_active"]]


def _features(n: int, seed: int = 0) -> list[VideoFeatures]:
    rng = np.random.default_rng(seed)
    return [
        VideoFeatures(
            "content",
            "content-1",
            rng.normal(size=12).astype(np.float32),
            rng.normal(size=(4, 12)).astype(np.float32),
            None,
            None,
        )
        for _ in range(n)
    ]


def test_held_out_videos_never_train(
    home: tuple[CliRunner, list[str]], settings: Settings, database: Database
) -> None:
    from recsys.features import get_extractor

    data = load_training_data(settings, database, get_extractor("content"), progress=False)
    assert len(data) == VIDEOS and len(data.pairs)
    for pairs in ("related", "categories"):
        config = TrainConfig(pairs=pairs, progress=False)
        train_index, held = split_validation(data, config)
        assert held is not None and len(held) >= MIN_HELD_OUT_VIDEOS
        again = split_validation(data, config)[1]
        assert again is not None and (again.queries == held.queries).all()  # seeded
        other = split_validation(data, TrainConfig(pairs=pairs, seed=1))[1]
        assert other is not None and set(other.queries) != set(held.queries)
        out = set(held.queries.tolist())
        assert out.isdisjoint(train_index.tolist())
        train = data.subset(train_index)
        assert not out & {int(train_index[i]) for i in np.unique(train.pairs)}
        # every pair of a held-out video is held out, and it ranks the whole catalog
        touching = [p for p in data.pairs.tolist() if out & set(p)]
        assert sorted(map(tuple, held.data.pairs.tolist())) == sorted(map(tuple, touching))
        assert len(held.data) == VIDEOS
        found = evidence(config, held)
        assert found.enough, found  # a 35-video library is gated

    for pairs in ("related", "categories"):
        # --no-refit: the registered model is the gated one (a refit trains on every video)
        config = TrainConfig(pairs=pairs, dim=16, epochs=1, refit=False, progress=False)
        result = train_model(settings, database, config)
        held_out = set(json.loads((result.run_dir / HELD_OUT_FILE).read_text()))
        warm = set(json.loads((result.run_dir / WARM_FILE).read_text()))
        assert len(held_out) == result.metrics["validation_videos"] >= MIN_HELD_OUT_VIDEOS
        assert warm and not held_out & warm  # no held-out video's pair or label trained it
        assert result.gate is not None and result.gate.status != "ungated"
        assert result.metrics["validation"]["gallery"] == VIDEOS


def test_worse_than_content_on_held_out_videos_is_refused(
    home: tuple[CliRunner, list[str]], database: Database
) -> None:
    runner, args = home
    train = ["train", "--pairs", "categories", "--dim", "32", *args]
    first = runner.invoke(app, [*train, "--tower", "mlp", "--epochs", "10"])
    assert first.exit_code == 0, first.output
    good = first.stdout.strip().splitlines()[-1]
    assert "passed the model gate" in first.stderr and "the first model" in first.stderr
    assert _active(database) == [good]  # the first good model of a home is activated

    # one epoch at a tiny learning rate from random towers: better than its untrained self,
    # worse than the content features on the held-out videos
    weak = ["--tower", "mlp", "--lr", "1e-4", "--epochs", "1", "--activate", "--json"]
    result = runner.invoke(app, [*train, *weak])
    assert result.exit_code == 1, result.output
    assert "rejected by the model gate" in result.stderr and NO_EPOCH_BEAT not in result.stderr
    payload = json.loads(result.stdout)
    gate = payload["gate"]
    assert payload["best_epoch"] == 0
    assert gate["status"] == "rejected" and gate["model"] < gate["content_baseline"]
    assert gate["held_out_pairs"] >= MIN_HELD_OUT_PAIRS
    assert _active(database) == [good]  # the previous active model stays active
    rows = {m["version"]: m for m in list_models(database)}
    rejected = payload["version"]
    assert rows[rejected]["status"] == "rejected" and not rows[rejected]["is_active"]
    assert "rejected by the model gate" in rows[rejected]["status_reason"]

    listed = runner.invoke(app, ["models", "list", *args])
    assert listed.exit_code == 0 and "rejected map" in listed.output  # the gate's figures
    refused = runner.invoke(app, ["models", "activate", rejected, *args])
    assert refused.exit_code == 1 and "--force" in refused.stderr
    assert _active(database) == [good]
    forced = runner.invoke(app, ["models", "activate", rejected, "--force", *args])
    assert forced.exit_code == 0 and _active(database) == [rejected]


def test_no_epoch_beat_the_content_features_is_never_a_pass(
    home: tuple[CliRunner, list[str]], settings: Settings, database: Database
) -> None:
    runner, args = home
    # learning rate 0: every epoch ranks exactly like the untrained model
    still = ["train", "--pairs", "related", "--lr", "0", "--epochs", "2", "--json", *args]
    result = runner.invoke(app, still)
    assert result.exit_code == 1, result.output
    assert NO_EPOCH_BEAT in result.stderr and "passed" not in result.stderr
    payload = json.loads(result.stdout)
    assert payload["best_epoch"] == -1 and payload["gate"]["status"] == "rejected"
    assert payload["refit"] is False and "refit_epochs" not in payload  # never refitted
    run = json.loads((settings.runs_dir / payload["run_id"] / "metrics.json").read_text())
    assert NO_EPOCH_BEAT in run["metrics"]["gate"]["reason"]
    row = next(m for m in list_models(database) if m["version"] == payload["version"])
    assert row["status"] == "rejected" and NO_EPOCH_BEAT in row["status_reason"]
    assert _active(database) == []


def test_gate_then_refit_trains_the_registered_model_on_the_held_out_videos_too(
    home: tuple[CliRunner, list[str]], settings: Settings, database: Database
) -> None:
    from recsys.features import get_extractor

    config = TrainConfig(
        pairs="categories", tower="mlp", dim=16, epochs=6, patience=10, activate=True
    )
    config.progress = False
    refitted = train_model(settings, database, config)
    assert refitted.gate is not None and refitted.gate.passed
    epochs = refitted.fit.best_epoch + 1
    assert epochs >= 1 and refitted.refit is not None
    assert refitted.metrics["refit"] is True and refitted.metrics["refit_epochs"] == epochs
    assert [h["epoch"] for h in refitted.refit.history] == list(range(epochs))
    run = json.loads((refitted.run_dir / "metrics.json").read_text())
    assert run["metrics"]["refit"] is True and run["metrics"]["refit_epochs"] == epochs
    row = next(m for m in list_models(database) if m["version"] == refitted.version)
    assert row["metrics"]["refit"] is True and row["metrics"]["refit_epochs"] == epochs
    assert row["is_active"]
    # the held-out videos trained the registered model: none is held out of it any more
    assert json.loads((refitted.run_dir / HELD_OUT_FILE).read_text()) == []
    warm = json.loads((refitted.run_dir / WARM_FILE).read_text())
    assert len(warm) == VIDEOS

    runner, args = home
    cli = ["train", "--pairs", "categories", "--tower", "mlp", "--dim", "16", "--epochs", "6"]
    kept = runner.invoke(app, [*cli, "--patience", "10", "--no-refit", "--json", *args])
    assert kept.exit_code == 0, kept.output
    payload = json.loads(kept.stdout)
    assert payload["refit"] is False and "refit_epochs" not in payload
    # same gated run, same gate figures: the gate scored the held-out model in both
    assert payload["gate"] == refitted.metrics["gate"]
    assert payload["best_epoch"] == refitted.fit.best_epoch
    held_out = json.loads((settings.runs_dir / payload["run_id"] / HELD_OUT_FILE).read_text())
    assert len(held_out) == payload["validation_videos"] > 0

    data = load_training_data(settings, database, get_extractor("content"), progress=False)
    gated = embed_data(refitted.fit.model, data, CPU)
    served = load_embedder(settings, database, refitted.version).embed(data.features)[0]
    old = load_embedder(settings, database, payload["version"]).embed(data.features)[0]
    assert np.allclose(old, gated, atol=1e-5)  # --no-refit registers the gated model
    assert not np.allclose(served, gated, atol=1e-3)  # the refit is another model
    assert np.allclose(served, embed_data(refitted.refit.model, data, CPU), atol=1e-5)


def test_a_small_library_is_told_what_it_needs(
    home: tuple[CliRunner, list[str]], settings: Settings, database: Database
) -> None:
    runner, args = home
    config = dict(dim=16, epochs=1, progress=False)
    # an impossible gain is refused even with --activate
    high = train_model(
        settings, database, TrainConfig(pairs="categories", min_gain=2, activate=True, **config)
    )
    assert high.rejected and not high.active and _active(database) == []
    # self-supervised: 7 held-out videos are 7 pairs of windows, too few; the advice is exact
    small = train_model(settings, database, TrainConfig(pairs="self", **config))
    assert small.gate is not None and small.gate.status == "ungated" and not small.active
    reason = small.activation
    assert "7 held-out positive pairs (needs 10)" in reason and "--force" in reason
    assert "add about 15 videos or use --val-fraction 0.3" in reason
    sized = train_model(settings, database, TrainConfig(pairs="self", val_fraction=0.3, **config))
    assert sized.gate is not None and sized.gate.status != "ungated"
    forced = runner.invoke(
        app, ["train", "--pairs", "self", "--dim", "16", "--force", "--activate", *args]
    )
    assert forced.exit_code == 0, forced.output
    assert _active(database) == [forced.stdout.strip().splitlines()[-1]]


def test_sizing_advice_counts_pairs_and_fractions() -> None:
    """A related graph too thin to gate: the advice names the pairs and the fraction needed."""
    n = 30
    pairs = np.array([(i, i + 1) for i in range(0, 24, 2)])  # 12 disjoint pairs, 24 videos
    data = TrainingData(_features(n), labels=np.full(n, -1), pairs=pairs)
    config = TrainConfig(pairs="related", val_fraction=0.2)
    found = evidence(config, split_validation(data, config)[1])
    assert found.relevance == "pairs" and not found.enough
    advice = sizing_advice(data, config, found)
    assert advice.startswith("add about ") and "related pairs" in advice
    fraction = float(advice.rsplit("--val-fraction ", 1)[1])
    assert evidence(config, split_validation(data, config, fraction)[1]).enough
    assert not evidence(config, split_validation(data, config, fraction - 0.05)[1]).enough
    tiny = TrainingData(_features(6), labels=np.zeros(6, np.int64))
    assert sizing_advice(tiny, config, Evidence("pairs", 0, 0)) == "add at least 4 videos"


def test_no_usable_signal_fails_before_training(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    settings.frames_per_video, settings.frame_size = 6, 48
    corpus = generate_corpus(tmp_path / "c", videos=6, topics=1, seconds=1.0, seed=0, width=64)
    runner, args = _cli(settings)
    assert runner.invoke(app, ["ingest", str(corpus.manifest), *args]).exit_code == 0
    for pairs, reason in (("related", "no related pairs"), ("categories", "at least 2 categ")):
        with pytest.raises(TrainingError, match=reason):
            train_model(settings, database, TrainConfig(pairs=pairs, progress=False))
    assert (
        list_models(database) == []
        and not settings.runs_dir.exists()
        or not any((settings.runs_dir).glob("*/metrics.json"))
    )


def test_gate_verdicts() -> None:
    report = {"model": {"map": 0.5}, "content_baseline": {"map": 0.4}}
    enough = Evidence("categories", MIN_HELD_OUT_PAIRS, MIN_HELD_OUT_VIDEOS)
    assert gate_model(report, "map", enough).passed
    assert gate_model(report, "map", enough, min_gain=0.1).passed
    assert gate_model(report, "map", enough, min_gain=0.11).status == "rejected"
    untrained = gate_model(report, "map", enough, best_epoch=-1)
    assert untrained.status == "rejected" and NO_EPOCH_BEAT in untrained.reason
    few_pairs = Evidence("categories", MIN_HELD_OUT_PAIRS - 1, MIN_HELD_OUT_VIDEOS)
    few_videos = Evidence("categories", MIN_HELD_OUT_PAIRS, MIN_HELD_OUT_VIDEOS - 1)
    assert gate_model(report, "map", few_pairs).status == "ungated"
    assert gate_model(report, "map", few_videos).status == "ungated"
    assert gate_model(None, "map", Evidence("pairs", 50, 20)).status == "ungated"
    # categories: pairs with a held-out end, each counted once, whatever the other end
    labels = np.array([0, 0, 0, 1, 1, -1, 0, 1, 1, 0, 1, 0])
    data = TrainingData(features=_features(12), labels=labels)
    config = TrainConfig(pairs="categories", val_fraction=0.25)
    held = split_validation(data, config)[1]
    assert held is not None
    out = set(held.queries.tolist())
    expected = {
        (a, b)
        for a in range(12)
        for b in range(a + 1, 12)
        if labels[a] == labels[b] >= 0 and {a, b} & out
    }
    assert evidence(config, held) == Evidence("categories", len(expected), len(out))


#: Modality weights of the content features: equal, and the audio at a quarter.
WEIGHTS = {"equal": {"visual": 1.0, "audio": 1.0}, "light_audio": {"visual": 1.0, "audio": 0.25}}


@pytest.mark.parametrize("weights", sorted(WEIGHTS))
def test_untrained_residual_model_ranks_like_the_content_baseline(weights: str) -> None:
    """Residual towers start from the content features' geometry, modality weights included,
    for every fusion."""
    from recsys.models import FusionModel
    from training.baselines import content_baseline_vectors
    from training.config import model_config_for
    from training.evaluation import ranking

    rng = np.random.default_rng(0)
    features = [
        VideoFeatures(
            "content",
            "content-1",
            rng.normal(size=12).astype(np.float32) * np.arange(1, 13),
            rng.normal(size=(4, 12)).astype(np.float32),
            None if i % 5 == 0 else rng.normal(size=8).astype(np.float32) + 3,
            None if i % 5 == 0 else rng.normal(size=(3, 8)).astype(np.float32),
        )
        for i in range(20)
    ]
    data = TrainingData(features=features, labels=np.arange(20) % 4)
    expected = ranking(content_baseline_vectors(features, weights=WEIGHTS[weights]))[:, :5]
    equal = ranking(content_baseline_vectors(features))[:, :5]
    assert (expected == equal).all() == (weights == "equal")  # the weights change the ranking
    for fusion, combine in (
        ("late", "sum"),
        ("late", "concat"),
        ("late", "product"),
        ("early", "sum"),
    ):
        config = TrainConfig(
            fusion=fusion,
            combine=combine,
            pairs="categories",
            modalities=["visual", "audio"],
            dim=32,
            epochs=0,
            progress=False,
        )
        model_config = replace(model_config_for(config, data), modality_weights=WEIGHTS[weights])
        model = FusionModel(model_config)
        model.fit_inputs(features)
        model.eval()
        assert (ranking(embed_data(model, data, CPU))[:, :5] == expected).all(), (fusion, combine)
