"""Text-encoder exports, made once per model per machine and linked into each library.

An ONNX export of ViT-B-32's text tower takes 15-20 s; it depends only on the model, so it is
kept in the XDG cache dir and hard-linked (or copied) into every library that uses the model.
A library folder stays self-contained: it holds its own links to the files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imgsearch.encoder import Encoder

log = logging.getLogger(__name__)


def cache_root() -> Path:
    from platformdirs import user_cache_path

    return user_cache_path("imgsearch") / "text-encoders"


def model_key(encoder: Encoder) -> str:
    """Identity of the exported weights: model spec plus the weight files' size and mtime."""
    from importlib.metadata import version

    spec = encoder.spec
    parts: list[object] = [spec.name, spec.pretrained, spec.dim, version("open_clip_torch")]
    local = (
        spec.name[len("local-dir:") :] if spec.name.startswith("local-dir:") else spec.pretrained
    )
    path = Path(local)
    if local and path.exists():
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        parts += [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:20]


def _link_tree(src: Path, dest: Path) -> None:
    """Install a copy of `src` at `dest` atomically: hard links where possible."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for item in sorted(src.iterdir(), key=lambda p: p.name == "manifest.json"):  # manifest last
        try:
            os.link(item, tmp / item.name)
        except OSError:
            shutil.copy2(item, tmp / item.name)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def installed(dest: Path) -> bool:
    """Does `dest` hold a complete export (cheap: reads the manifest only)?"""
    try:
        from imgsearch import textonnx
    except ImportError:
        return False
    return textonnx.exported(dest)


def install_text_encoder(
    dest: Path, encoder: Encoder, on_status: Callable[[str], None] | None = None
) -> str:
    """Make sure `dest` holds an ONNX export of the encoder's text tower.

    Returns "ok", "unsupported" (this model's text tower cannot be exported; queries use
    torch) or "failed" (worth trying again on a later run).
    """
    try:
        from imgsearch import textonnx
    except ImportError:
        return "unsupported"
    if textonnx.exported(dest):
        return "ok"
    cached = cache_root() / model_key(encoder)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        # Runs into different libraries share the cache: one exports, the others wait for it.
        with _exclusive(cached.with_name(cached.name + ".lock")):
            if not textonnx.exported(cached):
                if on_status:
                    on_status("exporting the text encoder (once per model, for fast queries) ...")
                textonnx.export_text_encoder(encoder.model, encoder.tokenizer, cached)
        _link_tree(cached, dest)
    except NotImplementedError as exc:
        log.info("text encoder not exported (%s); queries will use torch", exc)
        return "unsupported"
    except Exception as exc:  # a failed export only costs query speed
        log.warning("could not export the text encoder to %s: %s", dest, exc)
        return "failed"
    return "ok" if textonnx.exported(dest) else "failed"
