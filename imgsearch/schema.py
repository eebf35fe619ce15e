"""SQLAlchemy Core tables at the newest schema revision (migrations/ builds them; this mirrors)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
meta_table = sa.Table(
    "meta", metadata, sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.Text)
)
images = sa.Table(
    "images",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("path", sa.LargeBinary, nullable=False, unique=True),  # os.fsencode(path)
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("mtime_ns", sa.Integer, nullable=False),
    sa.Column("fingerprint", sa.Text),
    sa.Column("width", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("taken_at", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("indexed_at", sa.Text, nullable=False),
    sa.Column("vector_gen", sa.Integer),  # generation of the write that set the vector
    sa.Column("root_id", sa.Integer),  # the root that owns the row (None: a file given alone)
    sa.Column("content_hash", sa.Text),  # full-content hash, when a copy had to be confirmed
    # photo metadata (0005): filters and facets
    sa.Column("taken_at_source", sa.Text),
    sa.Column("camera_make", sa.Text),
    sa.Column("camera_model", sa.Text),
    sa.Column("lens", sa.Text),
    sa.Column("latitude", sa.Float),
    sa.Column("longitude", sa.Float),
    sa.Column("altitude", sa.Float),
    sa.Column("orientation", sa.Integer),
    sa.Column("file_type", sa.Text),
    sa.Column("folder", sa.LargeBinary),  # os.fsencode(dirname)
    sa.Column("meta_version", sa.Integer),
    sa.Column("phash", sa.LargeBinary),  # 0008: photohash.pack(PHash), 8 bytes a hash
)
# 0007: the vectors of the 'ok' images (triggers drop a row with its image or when it fails)
vectors = sa.Table(
    "vectors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # = images.id
    sa.Column("vector", sa.LargeBinary, nullable=False),  # meta.vector_format, (dim,)
)
roots = sa.Table(
    "roots",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("path", sa.LargeBinary, nullable=False, unique=True),  # canonical, exact bytes
    sa.Column("device", sa.Integer),  # st_dev when last indexed: an unmounted drive differs
    sa.Column("added_at", sa.Text, nullable=False),
    sa.Column("indexed_at", sa.Text),
    sa.Column("kind", sa.Text, nullable=False, server_default="root"),  # root | excluded
)
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("started_at", sa.Text, nullable=False),
    sa.Column("finished_at", sa.Text),
    sa.Column("roots", sa.Text, nullable=False),
    sa.Column("added", sa.Integer),
    sa.Column("updated", sa.Integer),
    sa.Column("moved", sa.Integer),
    sa.Column("removed", sa.Integer),
    sa.Column("skipped", sa.Integer),
    sa.Column("unchanged", sa.Integer),
    sa.Column("status", sa.Text, nullable=False),
)
tag_sets = sa.Table(
    "tag_sets",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("templates", sa.Text, nullable=False),
    sa.Column("exclusive", sa.Integer, nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Text, nullable=False),
)
tags = sa.Table(
    "tags",
    metadata,
    sa.Column("tag_set", sa.Text, primary_key=True),
    sa.Column("image_id", sa.Integer, primary_key=True),
    sa.Column("label", sa.Text, primary_key=True),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("prob", sa.Float),
)
albums = sa.Table(
    "albums",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("text", sa.Text),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("weights", sa.LargeBinary, nullable=False),
    sa.Column("bias", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
)
album_examples = sa.Table(
    "album_examples",
    metadata,
    sa.Column("album", sa.Text, primary_key=True),
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column("positive", sa.Integer, nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),
)
album_members = sa.Table(
    "album_members",
    metadata,
    sa.Column("album", sa.Text, primary_key=True),
    sa.Column("image_id", sa.Integer, primary_key=True),
    sa.Column("score", sa.Float, nullable=False),
)
