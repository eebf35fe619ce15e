"""ONNX exports of a model's towers, made once per model per machine in the XDG cache.

An export of ViT-B-32's text tower takes 15-20 s, its image tower 10-25 s; they depend only on
the model, so they are kept in the XDG cache dir, made under a lock (concurrent runs: one
exports, the others wait and reuse it) by `cached_export`. The text tower is hard-linked (or
copied) into every library that uses the model, so a library folder answers queries on its
own; the image tower is only needed to index, and is used from the cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgsearch.encoder import Encoder
    from imgsearch.modelspec import ModelSpec

log = logging.getLogger(__name__)


TEXT = "text-encoders"
TEXT_FORMATS = (1, 2)  # text-tower manifest formats that load (imgsearch.textonnx)
IMAGE = "image-encoders"


def cache_root(kind: str = TEXT) -> Path:
    from imgsearch.userdirs import user_dir

    return user_dir("cache") / kind


def model_key(encoder: Encoder) -> str:
    """Identity of the exported text weights: model spec plus the weight files' size and mtime."""
    spec = encoder.spec
    return weights_key(spec.name, spec.pretrained, spec.dim)


def weights_key(name: str, pretrained: str, *extra: object) -> str:
    """Hash of (name, weights, open_clip version, the weight files' size and mtime, extra).

    Needs neither torch nor the model: an index run finds its image export from the library's
    (or the command line's) model name alone.
    """
    import hashlib
    from importlib.metadata import version

    parts: list[object] = [name, pretrained, *extra, version("open_clip_torch")]
    local = name[len("local-dir:") :] if name.startswith("local-dir:") else pretrained
    path = Path(local)
    if local and path.exists():
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        parts += [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:20]


def cached_export(
    cached: Path,
    complete: Callable[[Path], bool],
    export: Callable[[Path], object],
    on_status: Callable[[str], None] | None = None,
    message: str = "",
) -> Path:
    """`cached` holding a complete export, made by `export(cached)` unless one is already there.

    Runs share the cache: the first takes the lock and exports, the others wait for it and
    find the export complete. Whatever `export` raises is passed on.
    """
    if complete(cached):
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(cached.with_name(cached.name + ".lock")):
        if not complete(cached):
            if on_status and message:
                on_status(message)
            export(cached)
    return cached


def _link_tree(src: Path, dest: Path) -> None:
    """Install a copy of `src` at `dest` atomically: hard links where possible."""
    import shutil

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
    """Does `dest` hold a complete text export? Cheap: reads the manifest only, and imports
    neither onnxruntime nor numpy (an unchanged re-index asks this and needs nothing else)."""
    return is_exported(lambda folder: read_manifest(folder, "text encoder", TEXT_FORMATS), dest)


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
    try:
        cached = cached_export(
            cache_root(TEXT) / model_key(encoder),
            textonnx.exported,
            lambda folder: textonnx.export_text_encoder(encoder.model, encoder.tokenizer, folder),
            on_status,
            "exporting the text encoder (once per model, for fast queries) ...",
        )
        _link_tree(cached, dest)
    except NotImplementedError as exc:
        log.info("text encoder not exported (%s); queries will use torch", exc)
        return "unsupported"
    except Exception as exc:  # a failed export only costs query speed
        log.warning("could not export the text encoder to %s: %s", dest, exc)
        return "failed"
    return "ok" if textonnx.exported(dest) else "failed"


def link_cached_text_encoder(dest: Path, spec: ModelSpec) -> bool:
    """Link an already cached text export into `dest` without loading the model; True if done."""
    try:
        from imgsearch import textonnx
    except ImportError:
        return False
    cached = cache_root(TEXT) / weights_key(spec.name, spec.pretrained, spec.dim)
    if not textonnx.exported(cached):
        return False
    try:
        _link_tree(cached, dest)
    except OSError as exc:
        log.warning("could not link the text encoder into %s: %s", dest, exc)
        return False
    return textonnx.exported(dest)


# ---- the image tower -----------------------------------------------------------------------------


def image_export_dir(name: str, pretrained: str, precision: str = "fp32") -> Path:
    """Where this machine keeps (or will keep) the model's ONNX image encoder."""
    suffix = "" if precision == "fp32" else f"-{precision}"
    return cache_root(IMAGE) / (weights_key(name, pretrained) + suffix)


def image_unsupported(export_dir: Path) -> str | None:
    """Why an earlier run could not export this image tower, if one could not (not retried)."""
    try:
        return export_dir.with_name(export_dir.name + ".unsupported").read_text().strip()
    except OSError:
        return None


def export_image_encoder(
    export_dir: Path,
    encoder: Encoder,
    on_status: Callable[[str], None] | None = None,
    precision: str = "fp32",
) -> Path:
    """Make (once, under the cache lock) the ONNX image encoder of a loaded torch Encoder.

    Raises imageonnx.OnnxExportError when the tower cannot be exported faithfully; that is
    remembered beside the export dir so later runs fall back to torch without trying again.
    """
    from imgsearch import imageonnx

    def export(folder: Path) -> None:
        try:
            imageonnx.export_image_encoder(encoder, folder, precision=precision)
        except imageonnx.OnnxExportError as exc:
            marker = folder.with_name(folder.name + ".unsupported")
            marker.write_text(str(exc).splitlines()[0][:300] + "\n")
            raise

    return cached_export(
        export_dir,
        imageonnx.exported,
        export,
        on_status,
        "exporting the image encoder (once per model) ..."
        if precision == "fp32"
        else f"exporting the image encoder (once per model and precision: {precision}) ...",
    )


MANIFEST = "manifest.json"  # written last: its presence means the export is complete


def read_manifest(export_dir: Path, what: str, formats: Collection[int]) -> dict[str, Any]:
    """An export's manifest, checked: readable, of a known format, every listed file there at
    its size (cheap: no model load). ModelError says to re-index."""
    from imgsearch.errors import ModelError

    path = export_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"no complete {what} export in {export_dir}: re-index") from exc
    if manifest.get("format") not in formats:
        raise ModelError(
            f"{path}: export format {manifest.get('format')!r} is not one of "
            f"{tuple(formats)}; re-index to export the {what} again"
        )
    for name, size in manifest.get("files", {}).items():
        file = export_dir / name
        if not file.is_file() or file.stat().st_size != size:
            raise ModelError(f"{file} is missing or truncated; re-index to export it again")
    return manifest


def is_exported(read: Callable[[Path], object], export_dir: Path) -> bool:
    """True when `read(export_dir)` finds a complete export."""
    from imgsearch.errors import ModelError

    try:
        read(Path(export_dir))
    except ModelError:
        return False
    return True
