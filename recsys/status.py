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

    ``videos``: {total, ready, stale, failed, deleted}; ``models``: one entry per model
    version (newest first) with embedded/stale/missing/failed counts; ``active_model``: the
    active version or None; ``active_index``: the active index build (version, model_version,
    count, dim, factory, recall_at_10, path) or None; ``home`` and ``database``.
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
        build = active_index(session)
        index = None
        if build is not None:
            index = {
                "version": build.version,
                "model_version": build.model_version,
                "count": int(build.count),
                "dim": int(build.dim),
                "factory": build.factory,
                "recall_at_10": build.recall_at_10,
                "path": build.path,
                "created_at": build.created_at.isoformat() if build.created_at else None,
            }
    return {
        "home": str(settings.resolved_home),
        "database": database.engine.url.render_as_string(hide_password=True),
        "videos": videos,
        "models": models,
        "active_model": active_model,
        "active_index": index,
    }
