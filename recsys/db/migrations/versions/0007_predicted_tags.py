"""predicted tags: categories and tags the tags model predicted, beside the human labels

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

``predicted_tags`` holds one row per (video, kind, tag) with its calibrated confidence and the
spans of the video where it applies; ``tag_prediction_state`` one row per predicted video (the
tags model version, the content it saw, abstention and segment disagreement). Human labels stay
in ``videos``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tag_prediction_state",
        sa.Column(
            "video_id",
            sa.BigInteger(),
            sa.ForeignKey("videos.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tags_model", sa.String(length=64), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("abstained", sa.Boolean(), nullable=False),
        sa.Column("segments_disagree", sa.Boolean(), nullable=False),
        sa.Column("segment_labels", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_tag_prediction_state_tags_model", "tag_prediction_state", ["tags_model"])
    op.create_table(
        "predicted_tags",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column(
            "video_id",
            sa.BigInteger(),
            sa.ForeignKey("videos.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("tag", sa.String(length=255), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("spans", sa.JSON(), nullable=False),
        sa.Column("tags_model", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("video_id", "kind", "tag", name="uq_predicted_tag"),
    )
    op.create_index("ix_predicted_tags_video_id", "predicted_tags", ["video_id"])
    op.create_index("ix_predicted_tags_kind_tag", "predicted_tags", ["kind", "tag"])


def downgrade() -> None:
    op.drop_index("ix_predicted_tags_kind_tag", table_name="predicted_tags")
    op.drop_index("ix_predicted_tags_video_id", table_name="predicted_tags")
    op.drop_table("predicted_tags")
    op.drop_index("ix_tag_prediction_state_tags_model", table_name="tag_prediction_state")
    op.drop_table("tag_prediction_state")
