"""A module imported on first attribute access, for modules on paths that rarely need it.

An unchanged re-index reads stat results and SQLite rows and never touches an array, yet
numpy's import alone is a fifth of that run. Modules it passes through bind `np = lazy.numpy`
instead of `import numpy as np`: the code reads the same, and numpy loads when first used.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands in for `name` until an attribute is read, then forwards to the real module."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded"
        return f"<lazy module {self._name!r} ({state})>"


numpy: Any = LazyModule("numpy")
