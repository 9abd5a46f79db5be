"""``recsys embed`` through the CLI, and what ``recsys status --json`` then reports."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys.db import open_database
from recsys.settings import Settings
from recsys.synth import CorpusInfo
from tests.refresh.helpers import ingest, make_model

runner = CliRunner()


def test_embed_without_an_active_model_says_what_to_do(
    sqlite_settings: Settings, corpus: CorpusInfo
) -> None:
    home = str(sqlite_settings.resolved_home)
    result = runner.invoke(app, ["embed", "--home", home])
    assert result.exit_code == 1
    message = " ".join(result.output.split())  # rich wraps long lines
    assert "no active model" in message
    assert "recsys models activate VERSION" in message

    unknown = runner.invoke(app, ["embed", "--home", home, "--model", "nope"])
    assert unknown.exit_code == 1
    assert "'nope' is not registered" in " ".join(unknown.output.split())


def test_embed_json_summary_and_status_counts(
    sqlite_settings: Settings, corpus: CorpusInfo, dims: tuple[int, int]
) -> None:
    database = open_database(sqlite_settings)
    ingest(sqlite_settings, database, [corpus.manifest])
    version = make_model(sqlite_settings, database, dims)
    other = make_model(sqlite_settings, database, dims, seed=9, activate=False)
    database.dispose()
    home = str(sqlite_settings.resolved_home)

    result = runner.invoke(
        app,
        ["embed", "--home", home, "--workers", "2", "--batch-size", "4", "--json"],
    )

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["model_version"] == version
    assert (summary["embedded"], summary["failed"], summary["batches"]) == (12, 0, 3)
    assert summary["videos_per_s"] > 0
    assert set(summary["stage_seconds"]) >= {"features", "model", "write"}

    partial = runner.invoke(
        app,
        ["embed", "--home", home, "--model", other, "--video-id", "syn0001", "--json"],
    )
    assert partial.exit_code == 0, partial.output
    assert json.loads(partial.stdout)["cache_hits"] == 1

    status = runner.invoke(app, ["status", "--home", home, "--json"])
    assert status.exit_code == 0, status.output
    models = {m["model_version"]: m for m in json.loads(status.stdout)["models"]}
    assert (models[version]["embedded"], models[version]["missing"]) == (12, 0)
    assert (models[other]["embedded"], models[other]["missing"]) == (1, 11)
    assert models[version]["outdated"] == models[version]["failed"] == 0


def test_embed_with_an_extractor_fills_the_feature_cache_without_a_model(
    sqlite_settings: Settings, corpus: CorpusInfo
) -> None:
    """Stage A only (``recsys embed --extractor SPEC``): no model needed, a second run computes
    nothing, and ``--video-id`` limits the run to those videos."""
    database = open_database(sqlite_settings)
    ingest(sqlite_settings, database, [corpus.manifest])
    database.dispose()
    home = str(sqlite_settings.resolved_home)

    only = runner.invoke(
        app,
        ["embed", "--home", home, "--extractor", "content", "--video-id", "syn0001", "--json"],
    )
    assert only.exit_code == 0, only.output
    assert (json.loads(only.stdout)["selected"], json.loads(only.stdout)["computed"]) == (1, 1)

    first = runner.invoke(app, ["embed", "--home", home, "--extractor", "content", "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert (summary["selected"], summary["cache_hits"], summary["failed"]) == (12, 1, 0)
    assert summary["computed"] == 11

    again = runner.invoke(app, ["embed", "--home", home, "--extractor", "content", "--json"])
    assert again.exit_code == 0, again.output
    assert (json.loads(again.stdout)["cache_hits"], json.loads(again.stdout)["computed"]) == (12, 0)
