"""``recsys tags train`` and ``recsys tags eval`` share their training options: the same flags,
the same defaults (TagsOptions'), handed to the library as one ``TagsOptions``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import training.tags
from orchestration.cli.main import app
from recsys.choices import TagMethod, TagSource
from recsys.errors import UserError
from training.tags import TagsOptions

STOP = "stopped by the test"
SHARED = ["--source", "--method", "--threshold", "--extractor", "--workers", "--json"]


def _invoke(home: Path, *args: str) -> Result:
    env = {"RECSYS_DATABASE_URL": "", "COLUMNS": "200"}
    return CliRunner().invoke(app, ["tags", *args, "--home", str(home)], env=env)


def _stop_at(monkeypatch: pytest.MonkeyPatch, name: str) -> dict[str, Any]:
    """Replace ``training.tags.<name>`` by a function that records its call and stops."""
    seen: dict[str, Any] = {}

    def fake(*args: Any, **kwargs: Any) -> Any:
        seen["args"], seen["kwargs"] = args, kwargs
        raise UserError(STOP)

    monkeypatch.setattr(training.tags, name, fake)
    return seen


def _stopped(result: Result) -> None:
    assert result.exit_code == 1, result.output
    assert f"error: {STOP}" in result.stderr


@pytest.mark.parametrize(
    ("command", "function"), [("train", "train_tags"), ("eval", "evaluate_tags")]
)
def test_train_and_eval_take_the_same_training_options(
    command: str, function: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = _stop_at(monkeypatch, function)

    _stopped(_invoke(tmp_path, command))
    assert seen["args"][2] == TagsOptions(progress=True)  # every default is TagsOptions'

    _stopped(
        _invoke(
            tmp_path,
            command,
            *("--source", "features", "--method", "knn", "--threshold", "0.7"),
            *("--extractor", "content", "--workers", "2"),
        )
    )
    assert seen["args"][2] == TagsOptions(
        extractor="content",
        source=TagSource.FEATURES,
        method=TagMethod.KNN,
        threshold=0.7,
        workers=2,
        progress=True,
    )
    assert _invoke(tmp_path, command, "--threshold", "1.5").exit_code == 2
    assert _invoke(tmp_path, command, "--source", "pixels").exit_code == 2
    help_text = _invoke(tmp_path, command, "--help").stdout
    assert all(option in help_text for option in SHARED), help_text


def test_each_command_keeps_its_own_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    train = _stop_at(monkeypatch, "train_tags")
    _stopped(_invoke(tmp_path, "train", "--no-predict", "--threshold", "0.6"))
    assert train["kwargs"] == {"predict": False} and train["args"][2].threshold == 0.6
    evaluate = _stop_at(monkeypatch, "evaluate_tags")
    _stopped(_invoke(tmp_path, "eval", "--seeds", "3", "--method", "probe"))
    assert evaluate["kwargs"] == {"seeds": range(3)}
    assert evaluate["args"][2].method == TagMethod.PROBE
    assert "--seeds" not in _invoke(tmp_path, "train", "--help").stdout
    assert "--no-predict" not in _invoke(tmp_path, "eval", "--help").stdout
