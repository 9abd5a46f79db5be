"""Rows the store and refresh tests need before they can write vectors."""

from __future__ import annotations

from sqlalchemy.orm import Session

from recsys.db.models import ModelVersion


def add_model_row(
    session: Session, version: str, dim: int = 4, *, active: bool = False
) -> ModelVersion:
    """A registered (late-fusion, ``content``) model version the store's rows can point at."""
    row = ModelVersion(
        version=version,
        fusion="late",
        extractor="content",
        extractor_version="1",
        dim=dim,
        path=f"models/{version}",
        is_active=active,
    )
    session.add(row)
    return row
