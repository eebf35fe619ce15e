"""Zero-shot tags and few-shot albums (issue 11).

`tag_sets` records each label set applied to the library (how, with which thresholds), so
`index` can tag new photos the same way; `tags` holds one row per (set, image, label).
`albums` stores an album's definition (text, fitted scorer) and `album_examples` its example
photos with their vectors, so an album survives its example files; `album_members` is the
membership derived from them, refreshed on every change and for new photos at index time.

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tag_sets",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),  # what --labels named (built-in or file)
        sa.Column("templates", sa.Text, nullable=False),
        sa.Column("exclusive", sa.Integer, nullable=False),
        sa.Column("params", sa.Text, nullable=False),  # JSON: margin, thresholds, method
        sa.Column("applied_at", sa.Text, nullable=False),
    )
    op.create_table(
        "tags",
        sa.Column("tag_set", sa.Text, nullable=False),
        sa.Column("image_id", sa.Integer, nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("score", sa.Float, nullable=False),  # cosine similarity
        sa.Column("prob", sa.Float),  # softmax (exclusive) or sigmoid (SigLIP) probability
        sa.PrimaryKeyConstraint("tag_set", "image_id", "label"),
    )
    op.create_index("ix_tags_label", "tags", ["label"])
    op.create_index("ix_tags_image_id", "tags", ["image_id"])
    op.create_table(
        "albums",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("text", sa.Text),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("weights", sa.LargeBinary, nullable=False),  # float32 (dim,) direction
        sa.Column("bias", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
    )
    op.create_table(
        "album_examples",
        sa.Column("album", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("positive", sa.Integer, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("album", "path"),
    )
    op.create_table(
        "album_members",
        sa.Column("album", sa.Text, nullable=False),
        sa.Column("image_id", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("album", "image_id"),
    )
    op.create_index("ix_album_members_image_id", "album_members", ["image_id"])


def downgrade() -> None:
    for table in ("album_members", "album_examples", "albums", "tags", "tag_sets"):
        op.drop_table(table)
