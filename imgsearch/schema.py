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
    sa.Column("path", sa.Text, nullable=False, unique=True),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("mtime_ns", sa.Integer, nullable=False),
    sa.Column("fingerprint", sa.Text),
    sa.Column("width", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("taken_at", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("vector", sa.LargeBinary),
    sa.Column("indexed_at", sa.Text, nullable=False),
    sa.Column("vector_gen", sa.Integer),  # generation of the write that set `vector`
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
