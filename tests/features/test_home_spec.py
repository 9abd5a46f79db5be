"""Which stage-A spec a home uses: a new home takes (and records) the default, a home built
before keeps its own, an explicit spec wins without changing the record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recsys.db import open_database
from recsys.features import get_extractor
from recsys.features.home_spec import EARLIER_DEFAULT, home_spec, record_path, recorded_spec
from recsys.models import FusionModel, ModelConfig, save_model
from recsys.settings import Settings, load_settings, setting_default

DEFAULT = setting_default("feature_extractor")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("RECSYS_FEATURE_EXTRACTOR", raising=False)
    settings = load_settings(tmp_path / "home")
    settings.ensure_dirs()
    return settings


def test_the_default_is_efficientnet_lite_with_content_audio() -> None:
    assert DEFAULT == "visual=efficientnet-lite:lite0,audio=content"


def test_a_new_home_takes_the_default_and_keeps_it(home: Settings) -> None:
    database = open_database(home)
    assert home_spec(home, database) == DEFAULT
    assert recorded_spec(home) == DEFAULT
    # A later release with another default: the record decides, not the new default.
    record = json.loads(record_path(home).read_text())
    record_path(home).write_text(json.dumps({**record, "extractor": "visual=content"}))
    assert home_spec(home, database) == "visual=content"
    database.dispose()


def test_a_home_built_before_the_record_keeps_its_models_spec(home: Settings) -> None:
    database = open_database(home)
    extractor = get_extractor(EARLIER_DEFAULT)
    torch.manual_seed(0)
    config = ModelConfig(
        extractor=EARLIER_DEFAULT,
        extractor_version=extractor.version,
        visual_dim=8,
        audio_dim=8,
        dim=4,
        hidden=8,
    )
    save_model(home, database, FusionModel(config), activate=True)
    assert home_spec(home, database) == EARLIER_DEFAULT
    assert recorded_spec(home) == EARLIER_DEFAULT
    database.dispose()


def test_an_explicit_spec_wins_and_leaves_the_record(
    home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = open_database(home)
    assert home_spec(home, database, "visual=content,audio=none") == "visual=content,audio=none"
    assert recorded_spec(home) is None
    monkeypatch.setenv("RECSYS_FEATURE_EXTRACTOR", "content")
    assert home_spec(load_settings(home.home), database) == "content"
    assert recorded_spec(home) is None
    database.dispose()
