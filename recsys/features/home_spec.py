"""The stage-A spec a home uses when a command is not given one.

A new home takes the default (``Settings.feature_extractor``) and records it in
``$RECSYS_HOME/stage-a.json``; from then on the home keeps that spec, so a release that changes
the default never re-embeds a home's catalog by surprise. A home that predates the record keeps
the spec its models were trained on (the active model's, else the newest), or ``content`` (the
earlier default) when it holds only cached ``content`` features. A spec given explicitly (an
option, or ``RECSYS_FEATURE_EXTRACTOR``) wins for that command and leaves the record alone;
deleting the file lets the home take the current default.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from recsys.db import Database
from recsys.db.models import FeatureCacheEntry, ModelVersion
from recsys.settings import Settings

RECORD_FILE = "stage-a.json"
#: The default of releases without the record: what a home built then was built with.
EARLIER_DEFAULT = "content"


def record_path(settings: Settings) -> Path:
    return settings.resolved_home / RECORD_FILE


def recorded_spec(settings: Settings) -> str | None:
    """The spec recorded for the home, if any."""
    try:
        data = json.loads(record_path(settings).read_text())
    except (OSError, ValueError):
        return None
    spec = data.get("extractor") if isinstance(data, dict) else None
    return spec if isinstance(spec, str) and spec else None


def record_spec(settings: Settings, spec: str, reason: str) -> None:
    """Record ``spec`` as the home's (atomically: a temporary file, then a rename)."""
    path = record_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"extractor": spec, "reason": reason, "recorded_at": datetime.now(UTC).isoformat()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def _built_with(database: Database) -> str | None:
    """The spec of a home built before the record: its models', else ``content`` when it
    cached ``content`` features; None for a home with neither."""
    with database.session() as session:
        model = session.scalars(
            select(ModelVersion).order_by(
                ModelVersion.is_active.desc(), ModelVersion.created_at.desc()
            )
        ).first()
        if model is not None:
            return str(model.extractor)
        cached = session.scalars(
            select(FeatureCacheEntry.extractor)
            .where(FeatureCacheEntry.extractor.in_([EARLIER_DEFAULT, "visual=content"]))
            .limit(1)
        ).first()
    return EARLIER_DEFAULT if cached is not None else None


def home_spec(settings: Settings, database: Database, requested: str | None = None) -> str:
    """``requested`` when given, else the home's spec (see the module docstring)."""
    if requested:
        return requested
    if "feature_extractor" in settings.model_fields_set:  # RECSYS_FEATURE_EXTRACTOR or override
        return settings.feature_extractor
    recorded = recorded_spec(settings)
    if recorded is not None:
        return recorded
    built = _built_with(database)
    if built is not None:
        record_spec(settings, built, "the spec this home was built with")
        return built
    record_spec(settings, settings.feature_extractor, "the default when the home was created")
    return settings.feature_extractor
