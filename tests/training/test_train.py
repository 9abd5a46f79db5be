"""Training on a small synthetic corpus: it must beat the un-learned baselines on held-out videos,
and the library/CLI path (ingest -> train -> resume -> eval) must work end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys.db import Database
from recsys.features import get_extractor
from recsys.media import decode_video
from recsys.models import FusionModel, list_models, load_embedder
from recsys.settings import Settings
from recsys.synth import generate_corpus
from training import TrainConfig, TrainingData, evaluate_model, fit, train_model
from training.config import Activation, model_config_for, should_activate
from training.data import encode_labels
from training.model_evaluation import embed_data
from training.run import HELD_OUT_FILE

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> TrainingData:
    """48 two-second videos of 4 topics (visual twins and audio twins), content features."""
    out = tmp_path_factory.mktemp("corpus")
    info = generate_corpus(out, videos=48, topics=4, seconds=2.0, seed=0, width=96, height=72)
    extractor = get_extractor("content")
    features = [
        extractor.extract(decode_video(out / v.file, num_frames=8, size=64)) for v in info.videos
    ]
    labels, _ = encode_labels([v.category for v in info.videos])
    return TrainingData(features=features, labels=labels, keys=[v.video_id for v in info.videos])


def test_training_beats_untrained_and_content_baselines(synthetic: TrainingData) -> None:
    order = np.random.default_rng(0).permutation(len(synthetic))
    train, held_out = synthetic.subset(np.sort(order[:24])), synthetic.subset(np.sort(order[24:]))
    config = TrainConfig(
        fusion="late",
        pairs="categories",
        epochs=15,
        dim=32,
        hidden=64,
        batch_size=32,
        progress=False,
    )
    result = fit(config, train, None, device=CPU)
    report = evaluate_model(result.model, held_out, config, CPU)
    torch.manual_seed(0)
    untrained = FusionModel(
        model_config_for(TrainConfig(**{**vars(config), "tower": "mlp"}), train)
    )
    untrained.fit_inputs(train.features)
    baseline = evaluate_model(untrained, held_out, config, CPU, with_baselines=False)

    learned = report["model"]["recall@5"]
    assert learned >= 0.85
    assert learned >= report["content_baseline"]["recall@5"] + 0.1
    assert learned >= baseline["model"]["recall@5"] + 0.2
    assert learned >= report["random"]["recall@5"] + 0.4
    assert result.triplets_per_s > 0


def test_self_supervised_views_learn_same_source_retrieval(synthetic: TrainingData) -> None:
    config = TrainConfig(
        fusion="early",
        pairs="self",
        loss="infonce",
        epochs=4,
        dim=16,
        hidden=32,
        batch_size=16,
        progress=False,
    )
    result = fit(
        config, synthetic.subset(np.arange(36)), synthetic.subset(np.arange(36, 48)), device=CPU
    )
    assert result.selection_metric == "map"
    report = evaluate_model(result.model, synthetic.subset(np.arange(36, 48)), config, CPU)
    assert report["relevance"] == "same_source"
    assert report["model"]["recall@1"] > report["random"]["recall@1"] + 0.3


def _tiny_corpus(tmp_path: Path):  # type: ignore[no-untyped-def]
    return generate_corpus(
        tmp_path / "corpus",
        videos=16,
        topics=4,
        seconds=1.0,
        seed=1,
        width=64,
        height=48,
        silent_fraction=0.2,
    )


def test_train_model_resume_and_cli(settings: Settings, database: Database, tmp_path: Path) -> None:
    settings.frames_per_video, settings.frame_size = 6, 48
    corpus = _tiny_corpus(tmp_path)
    env = {
        "RECSYS_DATABASE_URL": settings.database_url or "",
        "RECSYS_FRAMES_PER_VIDEO": "6",
        "RECSYS_FRAME_SIZE": "48",
    }
    runner = CliRunner(env=env)
    home = ["--home", str(settings.resolved_home)]
    ingest = runner.invoke(
        app, ["ingest", str(corpus.manifest), "--related", str(corpus.cowatch), *home]
    )
    assert ingest.exit_code == 0, ingest.output

    base = dict(pairs="related", dim=16, hidden=32, batch_size=16, patience=10, progress=False)
    interrupted = train_model(settings, database, TrainConfig(epochs=2, **base))
    videos = corpus.out_dir / "videos"
    videos.rename(corpus.out_dir / "hidden")  # retraining must read the cache, not the files
    resumed = train_model(settings, database, TrainConfig(epochs=3, resume=True, **base))
    fresh = train_model(settings, database, TrainConfig(epochs=3, **base))
    (corpus.out_dir / "hidden").rename(videos)
    assert resumed.metrics["train_videos"] + resumed.metrics["validation_videos"] == 16
    assert [h["epoch"] for h in resumed.fit.history] == [-1, 0, 1, 2]  # -1: the untrained floor
    assert resumed.fit.history[:3] == interrupted.fit.history
    assert resumed.version == fresh.version  # resuming continues exactly where it stopped
    metrics = json.loads((resumed.run_dir / "metrics.json").read_text())
    assert metrics["version"] == resumed.version and len(metrics["history"]) == 4
    validation = metrics["metrics"]["validation"]
    assert {"model", "content_baseline", "random"} <= validation.keys()

    # a silent video still gets a unit-length embedding from the trained model
    embedder = load_embedder(settings, database, fresh.version)
    silent = next(v for v in corpus.videos if not v.has_audio)
    decoded = decode_video(corpus.out_dir / silent.file, num_frames=6, size=48)
    vectors, per = embedder.embed([get_extractor("content").extract(decoded)])
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-5) and not per["audio"].any()

    trained = runner.invoke(
        app,
        [
            "train",
            *home,
            "--fusion",
            "early",
            "--pairs",
            "categories",
            "--epochs",
            "2",
            "--dim",
            "16",
            "--activate",
            "--force",  # 16 videos leave too few held-out pairs to gate
            "--no-refit",  # keep the held-out videos cold for the report below
        ],
    )
    assert trained.exit_code == 0, trained.output
    version = trained.stdout.strip().splitlines()[-1]
    active = [m for m in list_models(database) if m["is_active"]]
    assert [m["version"] for m in active] == [version] and active[0]["fusion"] == "early"

    out = tmp_path / "eval.json"
    shown = tmp_path / "report"
    evaluated = runner.invoke(
        app,
        ["eval", "--manifest", str(corpus.manifest), *home, "--output", str(out), "--in-home"]
        + ["--report", str(shown)],
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert evaluated.stdout == ""  # the report went to the file; --json prints it
    report = json.loads(out.read_text())
    assert report["model_version"] == version and report["clips"] == 16
    assert report["ingest"]["unchanged"] == 16  # reused the home's catalog and feature cache
    # the videos the gate held out are cold: their labels never trained the model
    run_dir = settings.runs_dir / active[0]["metrics"]["run_id"]
    held_out = json.loads((run_dir / HELD_OUT_FILE).read_text())
    assert len(held_out) == 3 and report["warm_clips"] == 16 - 3
    assert report["cold"]["queries"] == 3 and "model" in report["cold"]
    assert report["warm"]["queries"] + report["cold"]["queries"] == report["queries"]
    assert (shown / "index.html").is_file() and (shown / "neighbours.png").is_file()
    # held-out (cold) figures come first, on the terminal and in the page
    assert evaluated.stderr.index("cold queries") < evaluated.stderr.index("all, model")
    page = (shown / "index.html").read_text()
    assert page.index("<td>cold</td>") < page.index("<td>warm</td>") < page.index("<td>all</td>")
    assert "cold: a query whose pairs and label the training never used" in page
    for name in ("model", "content_baseline", "random"):
        assert 0.0 <= report[name]["precision@1"] <= 1.0
        assert 0.0 <= report["same_source"][name] <= 1.0

    scratch = runner.invoke(app, ["eval", "--manifest", str(corpus.manifest), *home, "--json"])
    assert scratch.exit_code == 0, scratch.output
    assert json.loads(scratch.stdout)["ingest"]["added"] == 16  # a temporary catalog
    assert [m["version"] for m in list_models(database) if m["is_active"]] == [version]

    bad = runner.invoke(app, ["train", *home, "--fusion", "middle"])
    assert bad.exit_code == 2 and "--fusion" in bad.output  # a usage error, with the choices
    assert "'early'" in bad.output and "'late'" in bad.output


def test_first_model_trained_is_active_and_later_ones_wait(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    """Bug: in a fresh home `recsys train` then `recsys embed` failed with "no active model"."""
    corpus = _tiny_corpus(tmp_path)
    env = {
        "RECSYS_DATABASE_URL": settings.database_url or "",
        "RECSYS_FRAMES_PER_VIDEO": "6",
        "RECSYS_FRAME_SIZE": "48",
        "COLUMNS": "200",
    }
    runner = CliRunner(env=env)
    home = ["--home", str(settings.resolved_home)]
    # --force: 16 videos leave too few held-out pairs to gate (test_gate.py has gated homes)
    train = ["train", *home, "--pairs", "categories", "--epochs", "1", "--dim", "8", "--force"]
    assert runner.invoke(app, ["ingest", str(corpus.manifest), *home]).exit_code == 0

    first = runner.invoke(app, train)
    assert first.exit_code == 0, first.output
    version = first.stdout.strip().splitlines()[-1]
    assert "the first model" in first.stderr
    assert "next: recsys embed, then recsys index build" in first.stderr
    assert [m["version"] for m in list_models(database) if m["is_active"]] == [version]
    embedded = runner.invoke(app, ["embed", *home, "--json"])
    assert embedded.exit_code == 0, embedded.output
    summary = json.loads(embedded.stdout)
    assert summary["model_version"] == version and summary["embedded"] == 16

    # another model does not take activation unasked, and says how to serve it
    second = runner.invoke(app, [*train, "--fusion", "early"])
    assert second.exit_code == 0, second.output
    other = second.stdout.strip().splitlines()[-1]
    assert other != version
    assert f"model {version} stays active" in second.stderr
    assert f"recsys models activate {other}" in second.stderr
    assert [m["version"] for m in list_models(database) if m["is_active"]] == [version]
    # --activate does take it; --no-activate never does, even in a fresh catalog
    third = runner.invoke(app, [*train, "--fusion", "early", "--dim", "12", "--activate"])
    assert third.exit_code == 0, third.output
    chosen = third.stdout.strip().splitlines()[-1]
    assert "--activate was given" in third.stderr
    assert [m["version"] for m in list_models(database) if m["is_active"]] == [chosen]


def test_activation_policy_is_one_decision() -> None:
    """One function decides (a quality gate will refuse there); the first model wins a race."""
    auto, asked, never = TrainConfig(), TrainConfig(activate=True), TrainConfig(activate=False)
    assert should_activate(auto, {}, "b", None) == Activation(
        True, "the first model: none was active", only_if_none_active=True
    )
    assert not should_activate(auto, {}, "b", "a").activate
    assert should_activate(asked, {}, "b", "a").activate
    assert not should_activate(never, {}, "b", None).activate
    assert should_activate(never, {}, "a", "a").activate  # already active stays active


def test_two_first_models_leave_one_active(settings: Settings, database: Database) -> None:
    from recsys.models import ModelConfig, save_model
    from recsys.models.registry import activate_if_none_active

    torch.manual_seed(0)
    models = [
        FusionModel(ModelConfig(fusion="late", dim=dim, hidden=8, visual_dim=6, audio_dim=4))
        for dim in (8, 6)
    ]
    first, second = (save_model(settings, database, model) for model in models)
    assert activate_if_none_active(database, first)
    assert not activate_if_none_active(database, second)  # the later one never steals it
    assert [m["version"] for m in list_models(database) if m["is_active"]] == [first]


def test_cnn_inputs_train_end_to_end() -> None:
    """The frame CNN and log-mel CNN learn from raw inputs (SpecAugment on while training)."""
    from recsys.features import VideoFeatures

    rng = np.random.default_rng(0)
    features = []
    for i in range(16):
        label = i % 4
        frames = np.clip(rng.integers(0, 40, (4, 3, 32, 32)) + 60 * label, 0, 255)
        mels = (rng.normal(size=(2, 64, 64)) + label).astype(np.float32) if i % 5 else None
        features.append(
            VideoFeatures(
                "cnn",
                "cnn-1",
                np.zeros(4, np.float32),
                frames.astype(np.uint8),
                None if mels is None else np.zeros(4, np.float32),
                mels,
            )
        )
    data = TrainingData(features=features, labels=np.arange(16) % 4)
    config = TrainConfig(
        extractor="cnn",
        pairs="categories",
        epochs=2,
        dim=8,
        hidden=16,
        batch_size=16,
        progress=False,
    )
    result = fit(config, data, data, device=CPU)
    assert result.model.config.input_kind == "cnn" and result.model.config.windows == 8
    assert all(np.isfinite(h["train_loss"]) for h in result.history if h["epoch"] >= 0)
    vectors = embed_data(result.model, data, CPU)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
