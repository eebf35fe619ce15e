"""Alembic environment: runs on the connection imgsearch hands over (see imgsearch.library)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

config = context.config


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    # `alembic -x db=/path/library.db upgrade head` from a checkout (developers only).
    url = config.get_main_option("sqlalchemy.url") or ""
    db = context.get_x_argument(as_dictionary=True).get("db")
    engine = create_engine(f"sqlite:///{db}" if db else url)
    with engine.connect() as conn:
        context.configure(connection=conn, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
