"""video aliases: other paths of a video's content, recorded instead of second videos

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

Ingest registers one video per content hash; a file with the bytes of a registered video under
another path becomes a row here (its URI, unique), unless ``--allow-copies`` registers it as a
video of its own. Existing catalogs keep the copies they already registered.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "video_aliases",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "video",
            sa.BigInteger(),
            sa.ForeignKey("videos.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uri", name="uq_video_aliases_uri"),
    )
    op.create_index("ix_video_aliases_video", "video_aliases", ["video"])


def downgrade() -> None:
    op.drop_index("ix_video_aliases_video", table_name="video_aliases")
    op.drop_table("video_aliases")
