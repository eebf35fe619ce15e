"""The one exception type users see: its message names the file or setting and the fix."""

from __future__ import annotations


class ImgsearchError(Exception):
    """A failure the user can act on; the CLI prints it without a traceback (exit 1)."""


class ConfigError(ImgsearchError):
    """A bad setting: unknown key, wrong type, unreadable config file."""


class ModelError(ImgsearchError):
    """A model that cannot be loaded (offline, bad name or file) or does not fit the library."""


class LibraryError(ImgsearchError):
    """A library that cannot be opened or written (schema, lock, disk, permissions)."""


class LibraryBusyError(LibraryError):
    """Another process holds the library's write lock."""
