"""media roots: the folders (and files) whose videos may be served

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Existing catalogs had no recorded roots: the folder of each servable video's file (ready or
stale, local URI) becomes a root, so an upgrade keeps serving the videos that were served.
"""

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import unquote, urlparse

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _local(uri: str) -> str | None:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = unquote(parsed.path)
    elif parsed.scheme in ("", "local"):
        path = uri
    else:
        return None
    return os.path.dirname(os.path.realpath(path)) if os.path.isabs(path) else None


def upgrade() -> None:
    roots = op.create_table(
        "media_roots",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("path", name="uq_media_roots_path"),
    )
    videos = sa.table("videos", sa.column("uri", sa.Text), sa.column("status", sa.String))
    uris = op.get_bind().execute(
        sa.select(videos.c.uri).where(videos.c.status.in_(("ready", "stale")))
    )
    paths = sorted({p for (uri,) in uris if uri and (p := _local(uri)) is not None})
    if paths:
        now = datetime.now(UTC)
        op.bulk_insert(roots, [{"path": p, "kind": "directory", "created_at": now} for p in paths])


def downgrade() -> None:
    op.drop_table("media_roots")
