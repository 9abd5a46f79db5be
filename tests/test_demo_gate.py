"""``recsys demo --manifest`` indexes only an active model: a model the gate keeps inactive is
never published."""

from __future__ import annotations

from pathlib import Path

import pytest

from index import current_version
from orchestration.demo import DemoError, DemoOptions, run_demo
from recsys.db import Database
from recsys.models import list_models
from recsys.models.registry import activate_model
from recsys.settings import Settings
from recsys.synth import generate_corpus


def test_demo_never_publishes_an_inactive_model(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    settings.frames_per_video, settings.frame_size = 6, 48
    # 12 videos: too few held-out videos to gate, so the demo's model is not activated
    corpus = generate_corpus(
        tmp_path / "corpus", videos=12, topics=3, seconds=1.0, seed=2, width=64, height=48
    )
    options = DemoOptions(manifest=corpus.manifest, epochs=1, dim=16, workers=1, examples=1)
    said: list[str] = []
    with pytest.raises(DemoError, match="was not activated .*too small to gate"):
        run_demo(settings, database, options, said.append)
    assert current_version(settings) is None  # nothing was published
    (model,) = list_models(database)
    assert model["status"] == "ungated" and not model["is_active"]

    # once the user activates it anyway, the demo (reusing it) serves and indexes it
    activate_model(database, model["version"])
    report = run_demo(settings, database, options, said.append)
    assert report.model_reused and report.model_version == model["version"]
    assert current_version(settings) is not None
