"""The generation at which each row's vector was written, so the IVF index is updated in place.

`index` runs add and remove only the vectors written since the FAISS file's generation instead
of rebuilding it (k-means on a big library takes minutes). Rows from before this revision have
NULL and count as old; libraries from before it had no IVF file to update.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("images", sa.Column("vector_gen", sa.Integer))  # plain ALTER TABLE: keeps ids
    op.create_index("ix_images_vector_gen", "images", ["vector_gen"])


def downgrade() -> None:
    op.drop_index("ix_images_vector_gen", "images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("vector_gen")
