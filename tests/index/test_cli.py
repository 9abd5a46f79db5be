"""`recsys index` errors are clear messages with exit codes, never tracebacks."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from index.gpu import gpu_count
from orchestration.cli.main import app
from recsys.db import Database
from recsys.settings import Settings
from tests.index.catalog import make_catalog


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {"RECSYS_DATABASE_URL": settings.database_url or "", "COLUMNS": "200"}
    result = CliRunner().invoke(app, [*args, "--home", str(settings.home)], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, " ".join(result.output.split())


def test_commands_before_any_build(settings: Settings, database: Database) -> None:
    code, output = _cli(settings, "index", "build")
    assert code == 1 and "no active model" in output
    code, output = _cli(settings, "index", "info")
    assert code == 1 and "no index is active" in output
    code, output = _cli(settings, "index", "update")
    assert code == 3 and "recsys index build" in output
    code, output = _cli(settings, "index", "list")
    assert code == 0 and json.loads(output) == []


def test_bad_options_are_refused(settings: Settings, database: Database) -> None:
    make_catalog(settings, database, 300, 16)
    code, output = _cli(settings, "index", "build", "--factory", "IVF8,Bogus")
    assert code == 1 and "faiss rejects factory string" in output
    code, output = _cli(settings, "index", "build", "--kind", "hnsw", "--factory", "Flat")
    assert code == 1 and "exclude each other" in output
    code, output = _cli(settings, "index", "build", "--memory-budget", "lots")
    assert code == 1 and "memory size" in output
    code, output = _cli(settings, "index", "build", "--min-recall", "1.5")
    assert code == 1 and "--min-recall" in output
    if gpu_count() == 0:
        code, output = _cli(settings, "index", "build", "--gpu", "on")
        assert code == 1 and "no GPU" in output


def test_factory_string_build_and_info(settings: Settings, database: Database) -> None:
    make_catalog(settings, database, 800, 16)
    code, output = _cli(settings, "index", "build", "--factory", "IVF16,Flat", "--gpu", "off")
    assert code == 0, output
    assert "deprecated" not in output
    built = json.loads(output[output.index("{") :])
    assert built["factory"] == "IVF16,Flat" and built["recall_at_10"] >= 0.95
    code, output = _cli(settings, "index", "info")
    info = json.loads(output[output.index("{") :])
    assert info["version"] == built["version"] and info["active"] and info["checksum_ok"]
    assert info["manifest"]["search_params"] == built["search_params"]
    # The old spelling `--kind FACTORY` still builds it, and says what to type instead.
    code, output = _cli(
        settings, "index", "build", "--kind", "IVF16,Flat", "--gpu", "off", "--no-publish"
    )
    assert code == 0, output
    assert "deprecated: --kind IVF16,Flat is now --factory IVF16,Flat" in output
    assert json.loads(output[output.index("{") :])["factory"] == "IVF16,Flat"
