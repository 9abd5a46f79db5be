"""video channel: the uploader of a video, shown with results and filterable

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

``videos.channel`` is optional (NULL: unknown uploader); indexed because the catalog is
filtered and capped by it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("channel", sa.String(length=255), nullable=True))
        batch.create_index("ix_videos_channel", ["channel"])


def downgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.drop_index("ix_videos_channel")
        batch.drop_column("channel")
