"""Alembic glue: run the migrations shipped in the `migrations` package on a library's database."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa


def _script_location() -> str:
    import migrations

    return str(Path(migrations.__file__).resolve().parent)


@lru_cache(maxsize=1)
def _script():  # type: ignore[no-untyped-def]
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", _script_location())
    return cfg, ScriptDirectory.from_config(cfg)


def head() -> str:
    """The newest revision the code knows."""
    return _script()[1].get_current_head()


def is_known(revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return _script()[1].get_revision(revision) is not None
    except (CommandError, KeyError):
        return False
    except Exception:  # alembic raises ResolutionError subclasses for unknown ids
        return False


def upgrade(conn: sa.Connection, revision: str = "head") -> None:
    """Bring the database on `conn` to `revision` (inside the caller's transaction)."""
    from alembic import command

    cfg, _ = _script()
    cfg.attributes["connection"] = conn
    try:
        command.upgrade(cfg, revision)
    finally:
        cfg.attributes.pop("connection", None)
