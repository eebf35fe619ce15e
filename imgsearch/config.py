"""Settings: packaged config.toml < user file < IMGSEARCH_* env < flags, merged only here."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from imgsearch.errors import ConfigError
from imgsearch.userdirs import user_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_PREFIX = "IMGSEARCH_"


@dataclass(frozen=True)
class Settings:
    """Every setting, with the types config.toml declares; defaults live in config.toml only."""

    library: str
    model: str
    pretrained: str
    device: str
    runtime: str
    onnx_precision: str
    torch_precision: str
    batch_size: int
    decode: str
    workers: int
    max_pixels: int
    skip_hidden: bool
    follow_symlinks: bool
    limit: int
    min_score: float
    templates: str
    cutoff: str
    lang: str
    exact_search_max: int
    ivf_nprobe: int
    ivf_rerank: int
    memory_budget: str
    pq_rerank: int
    vector_precision: str
    thumbnail_cache_mb: int
    upload_max_mb: int

    @property
    def library_path(self) -> Path:
        """The library folder: the setting, or the XDG data dir's `library`."""
        if self.library:
            return Path(self.library).expanduser().resolve()
        return user_dir("data") / "library"


TEMPLATE_MODES = ("none", "photo", "ensemble")
DECODE_MODES = ("auto", "cpu", "gpu")
RUNTIMES = ("auto", "torch", "onnx")
ONNX_PRECISIONS = ("fp32", "int8")
TORCH_PRECISIONS = ("auto", "fp32", "bf16")
VECTOR_PRECISIONS = ("float32", "float16")
_SIZE_UNITS = {"": 1, "B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes in a size such as "4GB", "512 MB" or "1e9" (binary units: 1 GB = 2**30 bytes)."""
    import re

    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([KMGT]?B?)\s*", text, re.I)
    if not found:
        raise ValueError(f"not a size such as 4GB or 512MB: {text!r}")
    unit = found.group(2).upper()
    unit = unit if unit.endswith("B") or not unit else unit + "B"
    return int(float(found.group(1)) * _SIZE_UNITS[unit])


def packaged_config_path() -> Path:
    """config.toml inside an installed wheel, else the one at the checkout's root."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "config.toml", here.parent / "config.toml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"the default config.toml is missing (looked in {here} and {here.parent})")


def user_config_path() -> Path:
    """The user's config file in the XDG config dir (it need not exist)."""
    return user_dir("config") / "config.toml"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


_TYPES = {f.name: f.type for f in fields(Settings)}


def _coerce(key: str, value: Any, source: str) -> Any:
    """Check/convert one value to its declared type, naming the source on failure."""
    kind = _TYPES[key]
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in (
                "1",
                "true",
                "yes",
                "on",
                "0",
                "false",
                "no",
                "off",
            ):
                return value.lower() in ("1", "true", "yes", "on")
            raise ValueError
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if not isinstance(value, (str, int, float)):
            raise ValueError
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: setting '{key}' must be {kind}, got {value!r}") from None


def _merge(
    into: dict[str, Any],
    layer: Mapping[str, Any],
    source: str,
    sources: dict[str, str] | None = None,
) -> None:
    """Apply one layer; `sources` remembers which layer set each key, for later messages."""
    for key, value in layer.items():
        if key not in _TYPES:
            known = ", ".join(sorted(_TYPES))
            raise ConfigError(f"{source}: unknown setting '{key}' (known settings: {known})")
        into[key] = _coerce(key, value, source)
        if sources is not None:
            sources[key] = source


def _validate(values: dict[str, Any], sources: Mapping[str, str] | None = None) -> None:
    """Check values across types; a failure names the file, variable or flag that set it."""

    def fail(key: str, problem: str) -> ConfigError:
        where = (sources or {}).get(key)
        return ConfigError(
            f"{where}: setting '{key}' {problem}" if where else f"setting '{key}' {problem}"
        )

    def clash(keys: tuple[str, ...], problem: str) -> ConfigError:
        """Two settings that contradict each other: name where each was set."""
        wheres = [w for w in dict.fromkeys((sources or {}).get(k) for k in keys) if w]
        return ConfigError(f"{' and '.join(wheres)}: {problem}" if wheres else problem)

    if values["templates"] not in TEMPLATE_MODES:
        raise fail(
            "templates", f"must be one of {', '.join(TEMPLATE_MODES)}, got {values['templates']!r}"
        )
    if values["runtime"] not in RUNTIMES:
        raise fail("runtime", f"must be one of {', '.join(RUNTIMES)}, got {values['runtime']!r}")
    if values["onnx_precision"] not in ONNX_PRECISIONS:
        raise fail(
            "onnx_precision",
            f"must be one of {', '.join(ONNX_PRECISIONS)}, got {values['onnx_precision']!r}",
        )
    if values["torch_precision"] not in TORCH_PRECISIONS:
        raise fail(
            "torch_precision",
            f"must be one of {', '.join(TORCH_PRECISIONS)}, got {values['torch_precision']!r}",
        )
    if values["runtime"] == "onnx" and values["torch_precision"] == "bf16":
        raise clash(
            ("torch_precision", "runtime"),
            "setting 'torch_precision' is bf16, which only torch runs, but 'runtime' is onnx; "
            "use runtime torch (or auto), or onnx_precision int8 for a faster ONNX encoder",
        )
    if values["torch_precision"] == "bf16" and values["onnx_precision"] != "fp32":
        raise clash(
            ("torch_precision", "onnx_precision"),
            f"settings 'torch_precision' bf16 and 'onnx_precision' {values['onnx_precision']} "
            "ask for two encoders: bf16 runs torch, int8 the ONNX export; choose one",
        )
    if values["runtime"] == "onnx" and values["device"] not in ("auto", "cpu"):
        raise clash(
            ("runtime", "device"),
            f"setting 'runtime' is onnx, which runs on the CPU, but 'device' is "
            f"{values['device']!r}; use runtime torch (or auto) for {values['device']}",
        )
    from imgsearch.languages import valid_setting

    if not valid_setting(values["lang"]):
        raise fail(
            "lang", f"must be auto or a language code such as kor_Hang, got {values['lang']!r}"
        )
    for key in (
        "batch_size",
        "limit",
        "max_pixels",
        "ivf_nprobe",
        "ivf_rerank",
        "pq_rerank",
        "exact_search_max",
        "thumbnail_cache_mb",
        "upload_max_mb",
    ):
        if values[key] < 1:
            raise fail(key, f"must be at least 1, got {values[key]}")
    from imgsearch.query import QueryError, check_cutoff

    try:
        check_cutoff(values["cutoff"])
    except QueryError as exc:
        raise fail("cutoff", str(exc)) from None
    try:
        if parse_size(values["memory_budget"]) < 64 << 10:
            raise fail("memory_budget", f"must be at least 64KB, got {values['memory_budget']!r}")
    except ValueError as exc:
        raise fail("memory_budget", f"must be a size such as 4GB or 512MB ({exc})") from None
    if values["vector_precision"] not in VECTOR_PRECISIONS:
        raise fail(
            "vector_precision",
            f"must be one of {', '.join(VECTOR_PRECISIONS)}, got {values['vector_precision']!r}",
        )
    if values["workers"] < 0:
        raise fail("workers", f"must be 0 (auto) or more, got {values['workers']}")
    if values["decode"] not in DECODE_MODES:
        raise fail("decode", f"must be one of {', '.join(DECODE_MODES)}, got {values['decode']!r}")
    library = values["library"]
    if library and Path(library).expanduser().exists() and not Path(library).expanduser().is_dir():
        raise fail(
            "library",
            f"is {library!r}: library path {Path(library).expanduser()} is a file, not a folder; "
            f"give a folder (it is created when missing)",
        )


def resolve(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the layers into frozen Settings; `overrides` are flags (None values are ignored)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    packaged = packaged_config_path()
    _merge(values, _read_toml(packaged), str(packaged), sources)
    missing = set(_TYPES) - set(values)
    if missing:
        raise ConfigError(f"{packaged} lacks settings: {', '.join(sorted(missing))}")

    if config_file is None and env.get(ENV_PREFIX + "CONFIG"):
        config_file = env[ENV_PREFIX + "CONFIG"]
    if config_file is not None:
        path = Path(config_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        _merge(values, _read_toml(path), str(path), sources)
    else:
        user = user_config_path()
        if user.is_file():
            _merge(values, _read_toml(user), str(user), sources)

    for key in _TYPES:
        name = ENV_PREFIX + key.upper()
        if name in env:
            _merge(values, {key: env[name]}, f"environment variable {name}", sources)
    if overrides:
        flags = {k: v for k, v in overrides.items() if v is not None}
        _merge(values, flags, "command line", sources)
        for key in flags:
            sources[key] = f"command line (--{key.replace('_', '-')})"
    _validate(values, sources)
    return Settings(**values)


@functools.lru_cache(maxsize=1)
def packaged_defaults() -> dict[str, Any]:
    """The packaged config.toml's values, for `--help` (a small TOML read; no torch)."""
    try:
        return _read_toml(packaged_config_path())
    except ConfigError:
        return {}


def replace(settings: Settings, **changes: Any) -> Settings:
    """A copy with some settings changed (validated like any other layer)."""
    values = dataclasses.asdict(settings)
    _merge(values, changes, "override")
    _validate(values)
    return Settings(**values)
