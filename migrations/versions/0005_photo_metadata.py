"""Photo metadata for filters and facets: capture time source, camera, lens, GPS, file type.

Indexed columns so that `after:`, `camera:`, `ext:`, `has:gps`, `near:` and the facets are
SQL range or equality scans. `meta_version` says which metadata reader filled a row: rows from
before this revision have NULL and get their metadata on the next `index` (EXIF only, nothing
is embedded again).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = (
    ("taken_at_source", sa.Text),  # DateTimeOriginal | DateTimeDigitized | DateTime | GPS | PNG | mtime
    ("camera_make", sa.Text),
    ("camera_model", sa.Text),
    ("lens", sa.Text),
    ("latitude", sa.Float),  # signed decimal degrees
    ("longitude", sa.Float),
    ("altitude", sa.Float),  # metres
    ("orientation", sa.Integer),
    ("file_type", sa.Text),  # from content: jpeg | png | heif | avif | tiff | webp | gif | bmp
    ("folder", sa.LargeBinary),  # the containing folder's exact bytes, for facets
    ("meta_version", sa.Integer),
)
INDEXES = {
    "ix_images_taken_at": ["taken_at"],
    "ix_images_camera": ["camera_make", "camera_model"],
    "ix_images_file_type": ["file_type"],
    "ix_images_folder": ["folder"],
    "ix_images_latlon": ["latitude", "longitude"],
}


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column("images", sa.Column(name, kind))  # plain ALTER TABLE: keeps ids
    for name, columns in INDEXES.items():
        op.create_index(name, "images", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, "images")
    with op.batch_alter_table("images") as batch:
        for name, _ in COLUMNS:
            batch.drop_column(name)
