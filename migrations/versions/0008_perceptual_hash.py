"""Perceptual hashes stored at index time, so `duplicates --kind near` decodes no photo.

`phash` holds imgsearch.photohash's PHash of the upright picture, 8 big-endian bytes per
64-bit pHash: the full picture's, then its crop windows' (80 bytes), computed by the decoder
from the pixels it already has. Rows from before this revision have NULL; METADATA_VERSION 2 makes the
next `index` fill them (a small decode of each file, nothing is embedded again).

Revision ID: 0008
Revises: 0006 (the lead re-chains it after 0007 at merge)
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("images", sa.Column("phash", sa.LargeBinary))  # plain ALTER TABLE: keeps ids


def downgrade() -> None:
    # plain ALTER TABLE DROP COLUMN (SQLite >= 3.35, as 0007): a batch copy of `images` would
    # drop the triggers 0007 put on it
    op.execute("ALTER TABLE images DROP COLUMN phash")
