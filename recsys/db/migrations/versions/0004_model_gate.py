"""model gate: each model version's gate status and reason

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

``status`` is ready (passed the gate), ungated (validation too small to tell) or rejected (worse
than the content baseline); versions trained before the gate existed read as ready. The gate's
figures live in ``metrics["gate"]``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="ready")
        )
        batch.add_column(sa.Column("status_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("status_reason")
        batch.drop_column("status")
