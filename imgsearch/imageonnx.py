"""CLIP image encoder exported to ONNX, so CPU indexing runs on onnxruntime instead of torch.

onnxruntime ran ViT-B-32 at about twice torch's speed on the 2-core machine of issue 9, and
without torch and open_clip an `index` process starts ~5 s sooner and holds half the memory.
`export_image_encoder` (torch, once per model and machine, see imgsearch.exports) writes a graph
that takes the decode workers' uint8 (N, H, W, 3) pixels and applies the model's own mean/std
inside the graph (a ViT's folded into its patch embedding), then `manifest.json` last.
`OnnxImageEncoder` needs only onnxruntime + numpy.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from imgsearch import exports
from imgsearch.errors import ModelError
from imgsearch.modelspec import ModelSpec

if TYPE_CHECKING:
    from imgsearch.encoder import Encoder

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
GRAPH = "image_encoder.onnx"
WEIGHTS = "image_encoder.onnx.data"
PRECISIONS = ("fp32", "int8")
MIN_COSINE = 0.9999  # export self-check: ONNX vs torch fp32 on every probe image
MIN_COSINE_INT8 = 0.99  # opt-in int8 trades fidelity for speed; checked, but looser
TOP_K = 10
PROBES = 24
# Images per run of a single-threaded stream: ViT-B-32-256, 2 streams, batch 32 split into runs
# of 16 / 8 / 4 gave 14.4 / 15.4 / 15.0 img/s (ViT-B-32: 17.5 / 19.0 / 19.4), benchmarks/ONNX.md
RUN_IMAGES = 8
OPSET = 17


class OnnxExportError(ModelError):
    """The ONNX image encoder could not be written or does not match torch; use torch."""


def exported(export_dir: Path) -> bool:
    """True when `export_dir` holds a complete export of this format (manifest written last)."""
    return exports.is_exported(_read_manifest, export_dir)


def _read_manifest(export_dir: Path) -> dict[str, Any]:
    return exports.read_manifest(export_dir, "image encoder", (FORMAT_VERSION,))


class OnnxImageEncoder:
    """Index-time image encoder with Encoder's embed_pixels contract; onnxruntime, never torch."""

    device = "cpu"

    def __init__(
        self, export_dir: Path, *, threads: int = 0, manifest: dict[str, Any] | None = None
    ) -> None:
        """`threads` 0: every core busy, as one single-threaded run per core at once (data
        parallel over halves of a batch, weights shared: no thread barriers inside the
        model's small ops; benchmarks/ONNX.md, "Runs in parallel"). `threads` N: one run at
        a time on N threads (a Ray actor given N CPUs). `manifest`: the export's, before it
        is written (the export's self-check)."""
        export_dir = Path(export_dir)
        cores = os.cpu_count() or 1
        self.streams = cores if threads == 0 else 1
        self.run_images = RUN_IMAGES  # a stream's images per run (benchmarks vary it)
        self._pool: Any = None
        manifest = manifest or _read_manifest(export_dir)
        self._open(export_dir, manifest, 1 if threads == 0 else threads)

    def _open(self, export_dir: Path, manifest: dict[str, Any], threads: int) -> None:
        self.spec = ModelSpec.from_json(manifest["spec"])  # the exported model's own spec
        self.precision: str = manifest["precision"]
        self.export_dir = export_dir
        early = _PREFETCHED.pop(_prefetch_key(export_dir, threads), None)
        try:
            self.session = early.result() if early else _session(export_dir, threads)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(
                f"cannot load {export_dir / GRAPH}: {exc}; delete {export_dir} and re-index"
            ) from exc

    def _run(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        return self.session.run(None, {"pixels": batch})[0]

    def _forward(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """The graph on `batch`, split over `streams` concurrent runs of the one session
        (onnxruntime's Run is thread-safe and releases the GIL), each stream taking runs of
        at most `run_images` images: smaller runs keep a block's activations in cache."""
        if self.streams <= 1 or len(batch) <= 1:
            return self._run(batch)
        rounds = -(-len(batch) // (self.streams * self.run_images))  # every stream: as many runs
        parts = min(len(batch), self.streams * rounds)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="onnx-image")
        return np.concatenate(list(self._pool.map(self._run, np.array_split(batch, parts))))

    @property
    def dim(self) -> int:
        return self.spec.dim

    def embed_pixels(self, pixels: Any) -> npt.NDArray[np.float32]:
        """(N, H, W, 3) uint8 model inputs (imgsearch.decode) -> (N, dim) L2-normalised vectors."""
        batch = np.ascontiguousarray(np.asarray(pixels), dtype=np.uint8)
        out = self._forward(batch).astype(np.float32, copy=False)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _session(export_dir: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(export_dir / GRAPH), opts, providers=["CPUExecutionProvider"])


_PREFETCHED: dict[tuple[str, int, int, int], Future[Any]] = {}


def _prefetch_key(export_dir: Path, threads: int) -> tuple[str, int, int, int]:
    """The folder, the thread count and the graph file's identity: a session built before
    the export was rewritten is never handed out."""
    try:
        st = (Path(export_dir) / GRAPH).stat()
    except OSError:
        return (str(Path(export_dir)), threads, -1, -1)
    return (str(Path(export_dir)), threads, st.st_mtime_ns, st.st_size)


def prefetch(export_dir: Path, *, threads: int = 0) -> None:
    """Start building the session an `OnnxImageEncoder(export_dir, threads=threads)` made later
    in this process will take, on a second thread: onnxruntime releases the GIL while it reads
    and pre-packs the weights (~0.8 s for ViT-B-32), so a first `index` run walks, plans and
    starts its decoders meanwhile. onnxruntime is imported here, on the caller's thread."""
    import onnxruntime  # noqa: F401  (imports stay on one thread)

    key = _prefetch_key(export_dir, 1 if threads == 0 else threads)
    if key in _PREFETCHED:
        return
    _PREFETCHED.clear()  # one waits at most: a run that embedded nothing leaves its own behind
    future: Future[Any] = Future()

    def build() -> None:
        try:
            future.set_result(_session(Path(export_dir), key[1]))
        except BaseException as exc:  # handed to the encoder that takes it
            future.set_exception(exc)

    _PREFETCHED[key] = future
    # non-daemon: an unused build is joined at a normal exit (a finished `index` leaves
    # without waiting for it: the build only reads)
    threading.Thread(target=build, name="onnx-session").start()


def export_image_encoder(encoder: Encoder, dest_dir: Path, *, precision: str = "fp32") -> Path:
    """Write the ONNX image encoder of a loaded torch Encoder to `dest_dir`; self-checked.

    Raises OnnxExportError when the tower cannot be traced, or when its embeddings of the probe
    images differ from torch's (cosine or top-10 neighbours); the caller then indexes with torch.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    try:
        graph = _image_graph(encoder)
    except Exception as exc:  # an open_clip tower this code cannot restate or copy
        raise OnnxExportError(f"the image tower cannot be prepared for export: {exc}") from exc
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    (dest_dir / MANIFEST).unlink(missing_ok=True)  # from here on the folder is incomplete
    for stale in dest_dir.glob(".export-*"):  # left by an interrupted export
        shutil.rmtree(stale, ignore_errors=True)
    height, width = encoder.spec.preprocess.size
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".export-") as name:
        tmp = Path(name)
        try:
            raw = _trace(graph, np.zeros((2, height, width, 3), np.uint8), tmp)
            _optimize(_convert(raw, precision), tmp / GRAPH)
        except Exception as exc:  # torch.onnx / onnxruntime raise many unrelated types
            raise OnnxExportError(f"ONNX export of the image tower failed: {exc}") from exc
        manifest = {
            "format": FORMAT_VERSION,
            "precision": precision,
            "files": {n: (tmp / n).stat().st_size for n in (GRAPH, WEIGHTS) if (tmp / n).exists()},
            "model": encoder.spec.label(),
            "spec": encoder.spec.to_json(),  # preprocessing for the decoders, mean/std in-graph
            "normalisation": graph.normalisation,
            "last_block": graph.last_block,
            "versions": _versions(),
        }
        manifest["self_check"] = _self_check(encoder, tmp, manifest)
        for file in manifest["files"]:
            os.replace(tmp / file, dest_dir / file)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        os.replace(tmp / MANIFEST, dest_dir / MANIFEST)  # last: marks the export complete
    return dest_dir


def _image_graph(encoder: Encoder) -> Any:
    """A float32 CPU module: uint8 NHWC pixels -> (x/255 - mean)/std -> encode_image, with the
    mean/std folded into the patch embedding where the tower allows (`_patch_embedding`)."""
    import copy

    import torch
    from torch import nn

    pre = encoder.spec.preprocess
    model = encoder.model
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in model.parameters()):
        model = copy.deepcopy(model).float().cpu()

    else:
        model = copy.deepcopy(model)
    pruned = _pooled_token_only(model)
    _plain_attention(model)
    folded = _patch_embedding(model, pre.mean, pre.std)

    class ImageGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("mean", torch.tensor(pre.mean).view(1, 1, 1, 3) * 255)
            self.register_buffer("std", torch.tensor(pre.std).view(1, 1, 1, 3) * 255)

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            if folded:
                return self.model.encode_image(pixels.float())
            x = ((pixels.float() - self.mean) / self.std).permute(0, 3, 1, 2)
            return self.model.encode_image(x)

    graph = ImageGraph().eval()
    graph.normalisation = "folded into the patch embedding" if folded else "in the graph"
    graph.last_block = "the pooled token only" if pruned else "every token"
    return graph


def _patch_embedding(
    model: Any, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> bool:
    """Swap a ViT's patch convolution (kernel = stride, no padding) for the same maths as one
    MatMul over the flattened patches; True when it did.

    With `mean`/`std` the new layer takes NHWC pixels in 0-255 and the normalisation is folded
    into its weights and bias (it is linear per channel), so the graph makes no Sub, Div or
    layout Transpose over the batch and no NCHWc Conv: ~3% of ViT-B-32-256's time on one core
    (benchmarks/ONNX.md). Without them it takes the NCHW normalised input the conv took.
    """
    import torch
    from open_clip.transformer import VisionTransformer
    from torch import nn

    visual = getattr(model, "visual", None)
    conv = getattr(visual, "conv1", None)
    grid = getattr(visual, "grid_size", None)
    if (
        not isinstance(conv, nn.Conv2d) or grid is None or not isinstance(visual, VisionTransformer)
        or type(visual)._embeds is not VisionTransformer._embeds  # the conv's output is read
        or type(visual).forward is not VisionTransformer.forward  # only as open_clip's does
    ):  # fmt: skip
        return False
    p = conv.kernel_size
    if (
        conv.stride != p or conv.padding != (0, 0) or conv.dilation != (1, 1)
        or conv.groups != 1 or conv.in_channels != 3 or p[0] != p[1]
        or tuple(getattr(visual, "image_size", ())) != (grid[0] * p[0], grid[1] * p[1])
    ):  # fmt: skip
        return False
    nhwc = mean is not None and std is not None
    weight = conv.weight.detach().float()  # (D, 3, p, p)
    bias = torch.zeros(weight.shape[0]) if conv.bias is None else conv.bias.detach().float()
    if nhwc:
        m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
        bias = bias - (weight * (m / s)).sum((1, 2, 3))
        weight = weight / (255 * s)
    # rows in the order the forward flattens a patch: (row, column, channel) or (channel, ...)
    order = (2, 3, 1, 0) if nhwc else (1, 2, 3, 0)
    matrix = weight.permute(*order).reshape(-1, weight.shape[0]).contiguous()
    gh, gw, size, dim = int(grid[0]), int(grid[1]), int(p[0]), int(weight.shape[0])

    class PatchEmbedding(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("matrix", matrix)
            self.register_buffer("bias", bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n = x.shape[0]
            if nhwc:
                x = x.reshape(n, gh, size, gw, size, 3).permute(0, 1, 3, 2, 4, 5)
            else:
                x = x.reshape(n, 3, gh, size, gw, size).permute(0, 2, 4, 1, 3, 5)
            x = x.reshape(n, gh * gw, -1) @ self.matrix + self.bias
            return x.transpose(1, 2).reshape(n, dim, gh, gw)  # the conv's output layout

    visual.conv1 = PatchEmbedding()
    return True


def _plain_attention(model: Any) -> None:
    """Swap the vision tower's standard nn.MultiheadAttention for the same maths in plain ops.

    Traced as is, MultiheadAttention becomes ~40 shape ops per block (dynamic batch) that
    onnxruntime cannot fuse; restated with the sequence length as a constant, the graph is
    MatMul/Softmax only. Blocks of other kinds are left alone (they export, only slower).
    """
    import torch
    from torch import nn

    visual = getattr(model, "visual", None)
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    pos = getattr(visual, "positional_embedding", None)
    if blocks is None or pos is None:
        return
    length = int(pos.shape[0])

    class PlainAttention(nn.Module):
        def __init__(self, attn: nn.MultiheadAttention) -> None:
            super().__init__()
            self.attn = attn

        def forward(self, q: torch.Tensor, k: Any, v: Any, **kwargs: Any) -> tuple[Any, None]:
            attn = self.attn
            heads, width = attn.num_heads, attn.embed_dim
            qkv = nn.functional.linear(q, attn.in_proj_weight, attn.in_proj_bias)
            q, k, v = qkv.reshape(-1, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
            return attn.out_proj(_attend(q, k, v, length, heads, width)), None

    for block in blocks:
        if _standard_block(block):
            block.attn = PlainAttention(block.attn)


def _attend(q: Any, k: Any, v: Any, tokens: int, heads: int, width: int) -> Any:
    """Scaled dot-product attention on (N, heads, tokens, head width) tensors, as plain ops;
    the heads joined back into (N, query tokens, width). The sizes come as Python ints: read
    off the tensors, the trace would record them as Shape/Gather ops."""
    scores = (q * (width // heads) ** -0.5) @ k.transpose(-1, -2)
    return (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(-1, tokens, width)


def _standard_block(block: Any) -> bool:
    """open_clip's own residual block with a batch-first self-attention of the usual layout
    (one in-projection, no extra key/value bias or zero attention)."""
    from open_clip.transformer import ResidualAttentionBlock
    from torch import nn

    attn = getattr(block, "attn", None)
    return (
        type(block) is ResidualAttentionBlock
        and isinstance(attn, nn.MultiheadAttention)
        and attn.batch_first
        and attn._qkv_same_embed_dim
        and attn.bias_k is None
        and not attn.add_zero_attn
        and not hasattr(block, "ln_1_kv")
    )


def _pooled_token_only(model: Any) -> bool:
    """Run a ViT's last block for the class token alone; True when it did.

    A 'tok'-pooled tower reads one token of the last block's output, so that block's queries,
    attention output, out-projection and MLP are needed for that token only; its keys and
    values still cover every token. The same maths with 10 of the block's 12 matrix products
    per token skipped for all but one token: ~6.8% of ViT-B-32-256's multiply-adds.
    onnxruntime cannot find this itself (the Gather that picks the token sits after the block).
    """
    import torch
    from open_clip.transformer import Transformer, VisionTransformer
    from torch import nn

    visual = getattr(model, "visual", None)
    transformer = getattr(visual, "transformer", None)
    blocks = getattr(transformer, "resblocks", None)
    pos = getattr(visual, "positional_embedding", None)
    if (
        not isinstance(visual, VisionTransformer) or not blocks or pos is None
        or type(visual).forward is not VisionTransformer.forward
        or type(visual)._pool is not VisionTransformer._pool
        or type(visual)._global_pool is not VisionTransformer._global_pool
        or type(visual)._embeds is not VisionTransformer._embeds  # token 0: the class token
        or type(transformer).forward is not Transformer.forward
        or transformer.grad_checkpointing  # its checkpoint() call passes k_x, v_x
        or visual.attn_pool is not None or visual.pool_type != "tok" or visual.output_tokens
        or not transformer.batch_first or not _standard_block(blocks[-1])
        or blocks[-1].attn.in_proj_bias is None
    ):  # fmt: skip
        return False
    last = blocks[-1]
    attn: nn.MultiheadAttention = last.attn
    heads, width, length = attn.num_heads, attn.embed_dim, int(pos.shape[0])
    w, b = attn.in_proj_weight.detach(), attn.in_proj_bias.detach()

    class PooledBlock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = last
            self.register_buffer("q_weight", w[:width].clone())
            self.register_buffer("q_bias", b[:width].clone())
            self.register_buffer("kv_weight", w[width:].clone())
            self.register_buffer("kv_bias", b[width:].clone())

        def forward(self, x: torch.Tensor, attn_mask: Any = None) -> torch.Tensor:
            block, hd = self.block, width // heads
            y = block.ln_1(x)
            q = nn.functional.linear(y[:, :1], self.q_weight, self.q_bias)
            kv = nn.functional.linear(y, self.kv_weight, self.kv_bias)
            k, v = kv.reshape(-1, length, 2, heads, hd).permute(2, 0, 3, 1, 4)
            q = q.reshape(-1, 1, heads, hd).transpose(1, 2)
            x = x[:, :1] + block.ls_1(block.attn.out_proj(_attend(q, k, v, 1, heads, width)))
            return x + block.ls_2(block.mlp(block.ln_2(x)))

    blocks[-1] = PooledBlock()
    return True


def _trace(graph: Any, sample: npt.NDArray[np.uint8], folder: Path) -> Path:
    """Legacy TorchScript ONNX export (dynamo needs onnxscript) with a dynamic batch axis."""
    import torch

    path = folder / "raw.onnx"
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # nn.MultiheadAttention's fused inference kernel has no ONNX form: trace the plain ops
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings
            _export(graph, sample, path)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return path


def _export(graph: Any, sample: npt.NDArray[np.uint8], path: Path) -> None:
    import torch

    torch.onnx.export(
        graph,
        (torch.from_numpy(sample),),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["pixels"],
        output_names=["image_features"],
        dynamic_axes={"pixels": {0: "batch"}, "image_features": {0: "batch"}},
    )


def _convert(raw: Path, precision: str) -> Path:
    """Dynamic int8 weights (MatMuls; opt-in), or the fp32 graph unchanged."""
    if precision == "fp32":
        return raw
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = raw.with_name("int8.onnx")

    def not_the_quantisers(record: logging.LogRecord) -> bool:
        """Its advice to pre-process (root logger) is for its own users, not imgsearch's."""
        return "onnxruntime" not in record.pathname

    root = logging.getLogger()
    root.addFilter(not_the_quantisers)
    try:
        quantize_dynamic(
            str(raw), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"]
        )
    finally:
        root.removeFilter(not_the_quantisers)
    return out


def _optimize(src: Path, dest: Path) -> None:
    """Run ORT's portable (extended) fusions once, saving the weights as external data."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(dest)
    opts.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", WEIGHTS
    )
    opts.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
    )
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])


def probe_pixels(height: int, width: int, n: int = PROBES) -> npt.NDArray[np.uint8]:
    """(n, H, W, 3) varied, reproducible probe images: noise, gradients, flat colour blocks."""
    rng = np.random.default_rng(0)
    out = np.empty((n, height, width, 3), np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(n):
        kind = i % 3
        if kind == 0:
            img = rng.integers(0, 256, (height, width, 3))
        elif kind == 1:
            angle = rng.uniform(0, np.pi)
            ramp = np.cos(angle) * xx / width + np.sin(angle) * yy / height
            img = (ramp[..., None] * rng.uniform(0, 255, 3) + rng.uniform(0, 128, 3)) % 256
        else:
            img = np.broadcast_to(rng.integers(0, 256, 3), (height, width, 3)).copy()
            for _ in range(6):
                y, x = rng.integers(0, height), rng.integers(0, width)
                img[y : y + height // 3, x : x + width // 3] = rng.integers(0, 256, 3)
        out[i] = img
    return out


def compare(
    ref: npt.NDArray[np.float32], got: npt.NDArray[np.float32], k: int = TOP_K
) -> tuple[float, float]:
    """(min cosine image by image, share of self-queries whose top-k neighbours agree)."""
    cos = float(np.min(np.sum(ref * got, axis=1)))
    k = min(k, len(ref) - 1)
    top_ref = np.argsort(-(ref @ ref.T), axis=1)[:, 1 : k + 1]
    top_got = np.argsort(-(got @ got.T), axis=1)[:, 1 : k + 1]
    same = [set(a) == set(b) for a, b in zip(top_ref, top_got)]
    return cos, float(np.mean(same))


def _self_check(encoder: Encoder, export_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Probe images through torch and ONNX; raise unless cosine and top-10 agree."""
    onnx_encoder = OnnxImageEncoder(export_dir, manifest=manifest)  # the path indexing takes
    pixels = probe_pixels(*encoder.spec.preprocess.size)
    got = onnx_encoder.embed_pixels(pixels)
    ref = encoder.embed_pixels(pixels)
    cos, same_top = compare(ref, got)
    floor = MIN_COSINE if manifest["precision"] == "fp32" else MIN_COSINE_INT8
    if cos < floor or (manifest["precision"] == "fp32" and same_top < 1.0):
        raise OnnxExportError(
            f"ONNX image encoder ({manifest['precision']}) disagrees with torch: min cosine "
            f"{cos:.6f} (needs {floor}), top-{TOP_K} agreement {same_top:.0%}"
        )
    return {"min_cosine": cos, "top10_agreement": same_top, "probes": len(pixels)}


def _versions() -> dict[str, str]:
    import onnxruntime
    import open_clip
    import torch

    return {
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
