"""The model gate: a model worse than the content baseline is rejected and never activated; the
first good model of a home is activated; too small a validation split or no signal is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys.db import Database
from recsys.models import list_models
from recsys.settings import Settings
from recsys.synth import generate_corpus
from training import TrainConfig, TrainingData, fit, train_model
from training.errors import TrainingError
from training.gate import MIN_HELD_OUT_PAIRS, gate_model, held_out_pairs
from training.model_evaluation import embed_data

CPU = torch.device("cpu")


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
    """24 one-second videos of 4 topics, ingested with their co-watch pairs."""
    settings.frames_per_video, settings.frame_size = 6, 48
    corpus = generate_corpus(
        tmp_path / "corpus", videos=24, topics=4, seconds=1.0, seed=3, width=64, height=48
    )
    runner, home = _cli(settings)
    ingest = ["ingest", str(corpus.manifest), "--related", str(corpus.cowatch), *home]
    assert runner.invoke(app, ingest).exit_code == 0
    return runner, home


TRAIN = ["train", "--pairs", "categories", "--val-fraction", "0.5", "--dim", "48"]


def _active(database: Database) -> list[str]:
    return [m["version"] for m in list_models(database) if m["is_active"]]


def test_broken_model_is_rejected_and_the_active_model_stays(
    home: tuple[CliRunner, list[str]], database: Database
) -> None:
    runner, args = home
    first = runner.invoke(app, [*TRAIN, *args, "--epochs", "20"])
    assert first.exit_code == 0, first.output
    good = first.stdout.strip().splitlines()[-1]
    assert "passed the model gate" in first.stderr and "the first model" in first.stderr
    assert _active(database) == [good]  # the first good model of a home is activated

    # learning rate 0 on randomly initialised towers: a deliberately broken model
    broken = ["--tower", "mlp", "--lr", "0", "--epochs", "1", "--activate", "--json"]
    result = runner.invoke(app, [*TRAIN, *args, *broken])
    assert result.exit_code == 1, result.output
    assert "rejected by the model gate" in result.stderr
    gate = json.loads(result.stdout)["gate"]
    assert gate["status"] == "rejected" and gate["model"] < gate["content_baseline"]
    assert gate["held_out_pairs"] >= MIN_HELD_OUT_PAIRS
    assert _active(database) == [good]  # the previous active model stays active
    rows = {m["version"]: m for m in list_models(database)}
    rejected = json.loads(result.stdout)["version"]
    assert rows[rejected]["status"] == "rejected" and not rows[rejected]["is_active"]
    assert "rejected by the model gate" in rows[rejected]["status_reason"]

    listed = runner.invoke(app, ["models", "list", *args])
    assert listed.exit_code == 0 and "rejected map" in listed.output  # the gate's figures
    refused = runner.invoke(app, ["models", "activate", rejected, *args])
    assert refused.exit_code == 1 and "--force" in refused.stderr
    assert _active(database) == [good]
    forced = runner.invoke(app, ["models", "activate", rejected, "--force", *args])
    assert forced.exit_code == 0 and _active(database) == [rejected]


def test_min_gain_and_too_small_validation(
    home: tuple[CliRunner, list[str]], settings: Settings, database: Database
) -> None:
    runner, args = home
    config = dict(pairs="categories", dim=16, epochs=2, progress=False)
    # an impossible gain is refused even with --activate
    high = train_model(settings, database, TrainConfig(val_fraction=0.5, min_gain=2, **config))
    assert high.rejected and not high.active and _active(database) == []
    # 4 videos per topic held out: 6 same-topic pairs, too few to gate
    small = train_model(settings, database, TrainConfig(val_fraction=0.2, seed=1, **config))
    assert small.gate is not None and small.gate.status == "ungated"
    assert not small.active and "too small to gate" in small.activation
    forced = runner.invoke(
        app, ["train", "--pairs", "categories", "--dim", "16", "--epochs", "2", "--force", *args]
    )
    assert forced.exit_code == 0, forced.output
    assert _active(database) == [forced.stdout.strip().splitlines()[-1]]


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
    assert gate_model(report, "map", 10).passed
    assert gate_model(report, "map", 10, min_gain=0.1).passed
    assert gate_model(report, "map", 10, min_gain=0.11).status == "rejected"
    assert gate_model(report, "map", 9).status == "ungated"
    assert gate_model(None, "map", 50).status == "ungated"
    labels = np.array([0, 0, 0, 1, 1, -1])
    val = TrainingData(features=[], labels=labels, pairs=np.array([[0, 1], [2, 3]]))
    assert held_out_pairs("categories", val) == 4
    assert held_out_pairs("pairs", val) == 2
    assert held_out_pairs("same_source", None) == 0


def test_untrained_residual_model_ranks_like_the_content_baseline() -> None:
    """Residual towers start from the content features' geometry, for every fusion."""
    from training.baselines import content_baseline_vectors
    from training.evaluation import ranking

    rng = np.random.default_rng(0)
    from recsys.features import VideoFeatures

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
    expected = ranking(content_baseline_vectors(features))[:, :5]
    for fusion, combine in (
        ("late", "sum"),
        ("late", "concat"),
        ("late", "product"),
        ("early", "sum"),
    ):
        config = TrainConfig(
            fusion=fusion, combine=combine, pairs="categories", dim=32, epochs=0, progress=False
        )
        model = fit(config, data, None, device=CPU).model
        assert (ranking(embed_data(model, data, CPU))[:, :5] == expected).all(), (fusion, combine)
