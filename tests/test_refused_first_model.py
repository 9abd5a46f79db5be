"""Where the model gate refused the first model of a home, ``recsys embed`` names that version,
the gate's reason and the command that activates it anyway."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys.db import Database
from recsys.db.models import ModelStatus
from recsys.features import get_extractor
from recsys.models import FusionModel, ModelConfig, save_model
from recsys.settings import Settings

REASON = "recall@10 0.21 is below the content baseline's 0.35 on 40 held-out pairs"


def _refused_model(settings: Settings, database: Database, status: ModelStatus) -> str:
    torch.manual_seed(0)
    extractor = get_extractor("content")
    config = ModelConfig(
        extractor=extractor.name,
        extractor_version=extractor.version,
        visual_dim=8,
        audio_dim=4,
        dim=16,
        hidden=32,
    )
    return save_model(settings, database, FusionModel(config), status=status, status_reason=REASON)


@pytest.mark.parametrize(
    ("status", "command"),
    [(ModelStatus.REJECTED, "--force"), (ModelStatus.UNGATED, "")],
)
def test_embed_names_the_refused_first_model(
    settings: Settings, database: Database, status: ModelStatus, command: str
) -> None:
    version = _refused_model(settings, database, status)
    env = {"RECSYS_DATABASE_URL": settings.database_url or "", "COLUMNS": "300"}
    result = CliRunner().invoke(app, ["embed", "--home", str(settings.resolved_home)], env=env)
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert version in text and REASON in text
    activate = f"recsys models activate {version} {command}".strip()
    assert f"`{activate}`" in text
    assert "the first model of a home is activated" not in text
    activated = CliRunner().invoke(
        app,
        ["models", "activate", version, *command.split(), "--home", str(settings.resolved_home)],
        env=env,
    )
    assert activated.exit_code == 0, activated.output
