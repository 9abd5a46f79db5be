"""feature packs: a feature-cache row can point at one entry of a pack file

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

``feature_cache.row`` is the entry's index in the pack named by ``path``; rows of older caches
(one file per entry) keep ``row`` NULL and still read. Downgrading deletes the packed rows (an
older release cannot read packs): their features are misses there and are recomputed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feature_cache") as batch:
        batch.add_column(sa.Column("row", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.execute(sa.text('DELETE FROM feature_cache WHERE "row" IS NOT NULL'))
    with op.batch_alter_table("feature_cache") as batch:
        batch.drop_column("row")
