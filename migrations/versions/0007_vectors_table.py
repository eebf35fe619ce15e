"""Vectors in a table of their own, out of the metadata rows (issue 14).

A 2 KiB vector inside every `images` row made the metadata B-tree 20 GB at 10M images: every
metadata scan (filters, facets, `known_files`) read the vectors too. `vectors` maps an image id
to its vector BLOB; a row exists exactly for the images with status 'ok', which two triggers
keep true for every delete and every row that turns into an error, whoever writes; two more
keep `meta.vector_count` (writers upsert, so a rewritten vector is an UPDATE, not a count).

The encoding is a library-wide fact in `meta.vector_format`: absent or "float32" (what every
library before this revision has; the bytes move unchanged, so search results are identical),
or "float16" (chosen for a new library by the `vector_precision` setting: half the disk).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TRIGGERS = (
    "CREATE TRIGGER images_delete_vector AFTER DELETE ON images "
    "BEGIN DELETE FROM vectors WHERE id = OLD.id; END",
    "CREATE TRIGGER images_error_vector AFTER UPDATE OF status ON images "
    "WHEN NEW.status != 'ok' BEGIN DELETE FROM vectors WHERE id = NEW.id; END",
    # meta.vector_count: count(*) of a 10M-row table of BLOBs reads all of it (10 GB)
    "CREATE TRIGGER vectors_count_insert AFTER INSERT ON vectors BEGIN UPDATE meta "
    "SET value = CAST(value AS INTEGER) + 1 WHERE key = 'vector_count'; END",
    "CREATE TRIGGER vectors_count_delete AFTER DELETE ON vectors BEGIN UPDATE meta "
    "SET value = CAST(value AS INTEGER) - 1 WHERE key = 'vector_count'; END",
)
TRIGGER_NAMES = (
    "images_delete_vector", "images_error_vector", "vectors_count_insert", "vectors_count_delete"
)


def upgrade() -> None:
    op.create_table(
        "vectors",
        sa.Column("id", sa.Integer, primary_key=True),  # = images.id (rowid: one B-tree)
        sa.Column("vector", sa.LargeBinary, nullable=False),  # meta.vector_format, (dim,)
    )
    op.execute(
        "INSERT INTO vectors (id, vector) SELECT id, vector FROM images "
        "WHERE status = 'ok' AND vector IS NOT NULL ORDER BY id"
    )
    op.execute("ALTER TABLE images DROP COLUMN vector")  # SQLite >= 3.35; keeps ids
    op.execute(
        "INSERT INTO meta (key, value) VALUES ('vector_count', (SELECT count(*) FROM vectors))"
    )
    for sql in TRIGGERS:
        op.execute(sql)


def downgrade() -> None:
    bind = op.get_bind()
    fmt = bind.exec_driver_sql("SELECT value FROM meta WHERE key = 'vector_format'").scalar()
    if fmt not in (None, "float32"):
        raise RuntimeError(f"a {fmt} library cannot go below revision 0007 (float32 only)")
    for name in TRIGGER_NAMES:
        op.execute(f"DROP TRIGGER {name}")
    op.execute("DELETE FROM meta WHERE key = 'vector_count'")
    op.add_column("images", sa.Column("vector", sa.LargeBinary))
    op.execute(
        "UPDATE images SET vector = (SELECT vector FROM vectors WHERE vectors.id = images.id)"
    )
    op.drop_table("vectors")
