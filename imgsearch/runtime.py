"""The `runtime` setting -> the image encoder an index run uses: onnxruntime or torch.

On the CPU, onnxruntime runs the exported image tower faster than torch and, once the export
is cached, an index run imports neither torch nor open_clip (benchmarks/ONNX.md). On CUDA
(fp16) and MPS torch stays. A tower that cannot be exported falls back to torch, saying so.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from imgsearch.errors import ModelError

if TYPE_CHECKING:
    from imgsearch.config import Settings
    from imgsearch.encoder import Encoder
    from imgsearch.imageonnx import OnnxImageEncoder

    ImageEncoder = Encoder | OnnxImageEncoder


def choose(settings: Settings) -> str:
    """'onnx' or 'torch' for these settings, decided without importing torch.

    auto: onnx when the model is sure to run on the CPU (device cpu, or auto on a machine with
    neither an NVIDIA driver nor Apple silicon); otherwise torch loads first and the run still
    switches to onnx if torch then picks the CPU. `torch_precision = "bf16"` asks for torch:
    onnxruntime has no bf16 kernels on the CPU.
    """
    if settings.runtime != "auto":
        return settings.runtime
    if settings.torch_precision == "bf16":
        return "torch"
    if settings.device == "cpu":
        return "onnx"
    if settings.device != "auto":
        return "torch"
    return "torch" if _maybe_accelerator() else "onnx"


def _maybe_accelerator() -> bool:
    apple = sys.platform == "darwin" and platform.machine() == "arm64"
    return apple or os.path.exists("/dev/nvidiactl")


def _remembered(encoder: Any) -> Any:
    """Record the loaded model's input geometry, so that the next `index` of it on this machine
    decodes while the model loads (as the torch loader does)."""
    from imgsearch import modelspec

    spec = encoder.spec
    if modelspec.remembered(spec.name, spec.pretrained) != spec:
        modelspec.remember(spec)
    return encoder


def load_image_encoder(
    name: str,
    pretrained: str,
    settings: Settings,
    *,
    on_status: Callable[[str], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    load_torch: Callable[[], Encoder] | None = None,
) -> ImageEncoder:
    """The image encoder for an index run; a cached ONNX export loads without torch.

    `load_torch` (the run's own, memoised torch loader) supplies the model to export on a first
    run, so the text-tower export after it reuses that model instead of loading it again.
    """
    from imgsearch import exports

    label = f"{name} / {pretrained}" if pretrained else name
    runtime = choose(settings)
    if runtime == "torch":
        encoder = _torch(
            name, pretrained, settings.device, label, on_status, settings.torch_precision
        )
        bf16 = getattr(encoder, "precision", "fp32") == "bf16"
        if settings.runtime == "torch" or encoder.device != "cpu" or bf16:
            if on_warning and settings.onnx_precision != "fp32":
                on_warning(
                    f"onnx_precision {settings.onnx_precision} applies to the ONNX image "
                    f"encoder; torch runs this index ({encoder.device}), so it is not used"
                )
            if bf16 and encoder.device == "cpu" and on_warning:
                slow = cpu_without_amx()
                if slow:
                    on_warning(slow)
            return encoder
    else:
        encoder = None
    precision = settings.onnx_precision
    export_dir = exports.image_export_dir(name, pretrained, precision)
    from imgsearch import imageonnx

    if imageonnx.exported(export_dir):
        if on_status:
            extra = "" if precision == "fp32" else f", {precision}"
            on_status(f"loading model {label} (onnxruntime{extra}) ...")
        from imgsearch import modelspec

        modelspec.warn_if_random(name, pretrained)
        return _remembered(imageonnx.OnnxImageEncoder(export_dir))
    reason = exports.image_unsupported(export_dir)
    if reason is None:
        if encoder is None and load_torch is not None:
            encoder = load_torch()
            if encoder.device != "cpu":  # `--runtime onnx` on a GPU machine: export on the CPU
                encoder = None
        if encoder is None:
            encoder = _torch(name, pretrained, "cpu", label, on_status)
        try:
            exports.export_image_encoder(export_dir, encoder, on_status, precision)
            return imageonnx.OnnxImageEncoder(export_dir)
        except imageonnx.OnnxExportError as exc:
            reason = str(exc).splitlines()[0]
        except (OSError, ModelError) as exc:  # e.g. a full or read-only cache: torch still works
            reason = f"{type(exc).__name__}: {exc}"
    if on_warning:
        on_warning(
            f"the image encoder of {label} cannot run on onnxruntime ({reason}); "
            f"indexing with torch instead"
        )
    return encoder or _torch(name, pretrained, "cpu", label, on_status)


def prefetch_image_encoder(name: str, pretrained: str, settings: Settings) -> None:
    """Start loading the cached ONNX image encoder that `load_image_encoder` will return, on a
    second thread (imageonnx.prefetch); nothing when the run will use torch or must export."""
    if choose(settings) != "onnx":
        return
    from imgsearch import exports, imageonnx

    export_dir = exports.image_export_dir(name, pretrained, settings.onnx_precision)
    if imageonnx.exported(export_dir):
        imageonnx.prefetch(export_dir)


def cpu_without_amx(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """A warning when this Linux CPU lacks AMX-BF16, whose tiles made bf16 fast where it was
    measured (benchmarks/ONNX.md); None when it has them, or when the flags cannot be read."""
    try:
        with open(cpuinfo) as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return None
    if not flags or "amx_bf16" in flags:
        return None
    return (
        "torch_precision is bf16, but this CPU has no AMX (amx_bf16): bf16 can run slower "
        "than fp32 here; onnx_precision int8 or the default fp32 may be faster"
    )


def _torch(
    name: str,
    pretrained: str,
    device: str,
    label: str,
    on_status: Callable[[str], None] | None,
    precision: str = "auto",
) -> Encoder:
    from imgsearch.encoder import load_encoder

    if on_status:
        extra = " (torch, bf16)" if precision == "bf16" else ""
        on_status(f"loading model {label}{extra} ...")
    return load_encoder(name, pretrained, device, precision)
