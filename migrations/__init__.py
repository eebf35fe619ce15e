"""Alembic migrations of a library's database (versions/), and the schema they build."""

from pathlib import Path

# The schema at head, for new libraries; `python -m imgsearch.migrate` regenerates it.
HEAD_SQL = Path(__file__).parent / "head.sql"
