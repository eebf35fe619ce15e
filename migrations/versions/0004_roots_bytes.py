"""The library knows its folders, and every file has one identity stored as its exact bytes.

- `images.path` holds `os.fsencode(path)` as a BLOB: names that are not valid UTF-8 (Latin-1,
  Shift-JIS from old cards and shares) round-trip, and byte order gives prefix ranges.
- `roots`: the folders the library was asked to index (exact bytes, canonical), the device
  they were on (an unmounted drive shows up as another device), and when each was indexed;
  kind 'excluded' marks a folder inside a root that `imgsearch forget` took out.
- `images.root_id`: the root that owns a row; `images.content_hash`: full-content hash, filled
  when two files share size and partial hash (byte-identical copies share one vector).

Existing libraries get their roots from the run history (the folders that still exist).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import os

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    conn.execute(sa.text("UPDATE images SET path = CAST(path AS BLOB) WHERE typeof(path) = 'text'"))
    op.create_table(
        "roots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("path", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("device", sa.Integer),
        sa.Column("added_at", sa.Text, nullable=False),
        sa.Column("indexed_at", sa.Text),
        sa.Column("kind", sa.Text, nullable=False, server_default="root"),  # root | excluded
    )
    op.add_column("images", sa.Column("root_id", sa.Integer))  # plain ALTER TABLE: keeps ids
    op.add_column("images", sa.Column("content_hash", sa.Text))
    op.create_index("ix_images_root_id", "images", ["root_id"])
    op.create_index("ix_images_content_hash", "images", ["content_hash"])
    op.create_index("ix_images_size", "images", ["size"])

    seen: dict[str, str] = {}
    for lines, finished in conn.execute(
        sa.text("SELECT roots, finished_at FROM runs WHERE status = 'ok' ORDER BY id")
    ):
        for root in (lines or "").split("\n"):
            if root and os.path.isdir(root):
                seen[os.path.realpath(root)] = finished or ""
    for root, finished in seen.items():
        conn.execute(
            sa.text(
                "INSERT INTO roots (path, device, added_at, indexed_at) VALUES (:p, :d, :a, :a)"
            ),
            {"p": os.fsencode(root), "d": os.stat(root).st_dev, "a": finished},
        )
    # the longest root that holds a row owns it
    ordered = sa.text("SELECT id, path FROM roots ORDER BY length(path), id")
    for root_id, key in conn.execute(ordered).fetchall():
        low = key.rstrip(b"/") + b"/"
        conn.execute(
            sa.text("UPDATE images SET root_id = :r WHERE path >= :lo AND path < :hi"),
            {"r": root_id, "lo": low, "hi": low[:-1] + b"0"},
        )


def downgrade() -> None:
    op.drop_index("ix_images_size", "images")
    op.drop_index("ix_images_content_hash", "images")
    op.drop_index("ix_images_root_id", "images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("content_hash")
        batch.drop_column("root_id")
    op.drop_table("roots")
    op.get_bind().execute(
        sa.text("UPDATE images SET path = CAST(path AS TEXT) WHERE typeof(path) = 'blob'")
    )
