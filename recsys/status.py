"""The catalog at a glance: videos by status, embeddings per model version, what is served."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from recsys.catalog import active_index, embedding_counts, status_counts
from recsys.db import Database
from recsys.db.models import ModelVersion
from recsys.settings import Settings


def catalog_status(settings: Settings, database: Database) -> dict[str, Any]:
    """A JSON-ready report with stable keys.

    ``videos``: {total, ready, stale, failed, deleted} (``stale``: the file changed since
    ingest); ``models``: one entry per model version (newest first) with
    embedded/outdated/missing/failed counts (``outdated``: an embedding from older content or
    another extractor version); ``active_model``: the
    active version or None; ``active_index``: the index version the ``CURRENT`` pointer serves
    (version, model_version, count, dim, factory, recall_at_10 (None unless its gate measured
    10 neighbours), path, created_at from its database record; ``recorded`` False and those
    None when the database has no record of it) or None; ``home`` and ``database``.
    """
    with database.session() as session:
        counts = status_counts(session)
        videos = {
            "total": sum(counts.values()),
            "ready": counts.get("ready", 0),
            "stale": counts.get("stale", 0),
            "failed": counts.get("failed", 0),
            "deleted": counts.get("deleted", 0),
        }
        models = []
        active_model = None
        for model in session.scalars(
            select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.version)
        ):
            entry: dict[str, Any] = dict(embedding_counts(session, model).as_dict())
            entry.update(
                {
                    "fusion": model.fusion,
                    "extractor": model.extractor,
                    "extractor_version": model.extractor_version,
                    "dim": model.dim,
                    "is_active": bool(model.is_active),
                    "created_at": model.created_at.isoformat() if model.created_at else None,
                }
            )
            models.append(entry)
            if model.is_active:
                active_model = model.version
        # Which index is served comes from the CURRENT pointer; its row only adds details.
        version, build = active_index(session, settings)
        index = None
        if version is not None:
            index = {
                "version": version,
                "model_version": build.model_version if build else None,
                "count": int(build.count) if build else None,
                "dim": int(build.dim) if build else None,
                "factory": build.factory if build else None,
                "recall_at_10": build.recall_at_10 if build else None,
                "path": build.path if build and build.path else str(settings.indexes_dir / version),
                "created_at": build.created_at.isoformat() if build and build.created_at else None,
                "recorded": build is not None,
            }
    return {
        "home": str(settings.resolved_home),
        "database": database.engine.url.render_as_string(hide_password=True),
        "videos": videos,
        "models": models,
        "active_model": active_model,
        "active_index": index,
    }
