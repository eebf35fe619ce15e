"""CLIP text encoder exported to ONNX, so a cold query answers without importing torch.

`export_text_encoder` (build time, torch) writes a self-contained folder: an ORT-optimised
graph, its weights as page-aligned external data (memory-mapped at load, so load time does not
grow with model size), the BPE merges and, written last, `manifest.json`. `OnnxTextEncoder`
(query time) needs only onnxruntime + numpy. Because CLIP's text transformer is causal and
pools at the EOT token, ids are cut to the longest real sequence instead of padded to 77.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from imgsearch.errors import ModelError
from imgsearch.tokenizer import Tokenizer, pad, write_merges

if TYPE_CHECKING:
    from torch import nn

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GRAPH = "text_encoder.onnx"
WEIGHTS = "text_encoder.onnx.data"
MERGES = "bpe_merges.txt"
TOKENIZER_ARGS = ("context_length", "clean", "special_tokens")
PRECISIONS = ("fp32", "fp16", "int8")
MIN_COSINE = 0.999  # export self-check: ONNX vs torch fp32, on every probe text
BATCH = 64
OPSET = 17
# Varied probes for the export self-check: short, long (cut at the context length), unicode.
PROBE_TEXTS = (
    "a dog on a beach",
    "",
    "A PHOTO OF A RED CAR parked at night!!!",
    "café crème brûlée, naïve façade 🐶🌊",
    "東京の夜景 and 北京烤鸭",
    "two cats & one dog &amp; a parrot",
    "1234567890 3.14159 #hashtag @mention",
    "a very long caption " + "with many repeated words " * 30,
    "sunset over the mountains, golden hour, wide angle",
    "x",
)


class OnnxExportError(ModelError):
    """The ONNX text encoder could not be written or does not match torch; use the torch path."""


def exported(export_dir: Path) -> bool:
    """True when `export_dir` holds a complete export of this format (manifest written last)."""
    try:
        _read_manifest(Path(export_dir))
    except ModelError:
        return False
    return True


def _read_manifest(export_dir: Path) -> dict[str, Any]:
    """Parse and check the manifest and the files it lists (cheap: no model load)."""
    path = export_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"no complete text encoder export in {export_dir}: re-index") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise ModelError(
            f"{path}: export format {manifest.get('format')!r} is not "
            f"{FORMAT_VERSION}; re-index to re-export the text encoder"
        )
    for name, size in manifest.get("files", {}).items():
        file = export_dir / name
        if not file.is_file() or file.stat().st_size != size:
            raise ModelError(f"{file} is missing or truncated; re-index to re-export")
    return manifest


class OnnxTextEncoder:
    """Query-time text encoder: onnxruntime + numpy only, never torch."""

    def __init__(self, export_dir: Path, *, threads: int = 1, prepack: bool = False) -> None:
        """prepack=True: ~100 ms slower load, 2-3x faster queries after (long-lived processes)."""
        export_dir = Path(export_dir)
        self._open(export_dir, _read_manifest(export_dir), threads, prepack)

    def _open(
        self, export_dir: Path, manifest: dict[str, Any], threads: int, prepack: bool = False
    ) -> None:
        """Load tokenizer and session as `manifest` describes (export's self-check reuses it)."""
        import onnxruntime as ort

        tok = manifest["tokenizer"]
        self.tokenizer = Tokenizer(export_dir / MERGES, **{k: tok[k] for k in TOKENIZER_ARGS})
        self.dim: int = manifest["dim"]
        self.precision: str = manifest["precision"]
        self.truncate: bool = manifest["truncate"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # 1 measured fastest for one short query on 2 cores
        opts.inter_op_num_threads = 1
        # Optimised at export time; skipping it and weight pre-packing keeps weights mmapped.
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.add_session_config_entry("session.disable_prepacking", "0" if prepack else "1")
        try:
            self.session = ort.InferenceSession(
                str(export_dir / GRAPH), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load {export_dir / GRAPH}: {exc}; re-index") from exc

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """(N, dim) L2-normalised float32 vectors, batched by length to minimise padding."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        rows = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        width = None if self.truncate else self.tokenizer.context_length
        for start in range(0, len(order), BATCH):
            chunk = order[start : start + BATCH]
            ids = pad([rows[i] for i in chunk], width)
            out[chunk] = self.session.run(None, {"input_ids": ids})[0]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def export_text_encoder(
    model: nn.Module, tokenizer: Any, dest_dir: Path, *, precision: str = "fp32"
) -> Path:
    """Write the ONNX text encoder of an open_clip model to `dest_dir`; self-checked vs torch.

    Raises NotImplementedError for towers/tokenizers this export cannot reproduce exactly
    (HF or SigLIP tokenizers, HF text towers, CoCa class tokens, custom attention blocks).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    tok_cfg = _tokenizer_config(tokenizer)
    graph, spec = _text_graph(model)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    (dest_dir / MANIFEST).unlink(missing_ok=True)  # from here on the folder is incomplete
    for stale in dest_dir.glob(".export-*"):  # left by an interrupted export
        shutil.rmtree(stale, ignore_errors=True)

    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".export-") as name:
        tmp = Path(name)
        merges = sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.__getitem__)
        write_merges((" ".join(m) for m in merges), tmp / MERGES)
        ours = Tokenizer(tmp / MERGES, **{k: tok_cfg[k] for k in TOKENIZER_ARGS})
        probes = list(PROBE_TEXTS)
        if ours.encoder != tokenizer.encoder or not np.array_equal(
            ours(probes), tokenizer(probes).numpy()
        ):
            raise OnnxExportError(f"torch-free tokenizer for {dest_dir} differs from open_clip's")
        try:
            raw = _trace(graph, pad(ours.encode_batch(["a photo of a dog", "x"])), tmp)
            _optimize(_convert(raw, precision), tmp / GRAPH)
        except Exception as exc:  # torch.onnx / onnxruntime raise many unrelated types
            raise OnnxExportError(f"ONNX export to {dest_dir} failed: {exc}") from exc
        manifest = {
            "format": FORMAT_VERSION,
            "precision": precision,
            "files": {n: (tmp / n).stat().st_size for n in (GRAPH, WEIGHTS, MERGES)},
            **spec,
            "tokenizer": tok_cfg,
            "versions": _versions(),
        }
        manifest["min_probe_cosine"] = _self_check(model, tokenizer, tmp, manifest, dest_dir)
        for file in manifest["files"]:
            os.replace(tmp / file, dest_dir / file)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        os.replace(tmp / MANIFEST, dest_dir / MANIFEST)  # last: marks the export complete
    return dest_dir


def _trace(graph: nn.Module, sample: npt.NDArray[np.int64], folder: Path) -> Path:
    """Legacy TorchScript ONNX export (dynamo needs onnxscript) with dynamic batch and length."""
    import torch

    path = folder / "raw.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about the dynamic length
        torch.onnx.export(
            graph,
            (torch.from_numpy(sample),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input_ids"],
            output_names=["text_features"],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "text_features": {0: "batch"}},
        )
    return path


def _tokenizer_config(tokenizer: Any) -> dict[str, Any]:
    """Settings our Tokenizer needs to match `tokenizer`; NotImplementedError if it cannot."""
    from open_clip import tokenizer as oc_tok

    if not isinstance(tokenizer, oc_tok.SimpleTokenizer):
        raise NotImplementedError(
            f"ONNX text export supports open_clip's SimpleTokenizer (CLIP BPE) only, not "
            f"{type(tokenizer).__name__}; the torch text encoder will be used"
        )
    if tokenizer.reduction_fn is not None:
        raise NotImplementedError("tokenizers with a reduction_mask are not supported")
    cleans = {
        oc_tok._clean_lower: "lower",
        oc_tok._clean_whitespace: "whitespace",
        oc_tok._clean_canonicalize: "canonicalize",
    }
    if tokenizer.clean_fn not in cleans:
        raise NotImplementedError(f"unknown tokenizer clean function {tokenizer.clean_fn!r}")
    return {
        "context_length": tokenizer.context_length,
        "clean": cleans[tokenizer.clean_fn],
        "special_tokens": [tokenizer.decoder[i] for i in tokenizer.all_special_ids],
        "vocab_size": tokenizer.vocab_size,
    }


def _text_graph(model: nn.Module) -> tuple[nn.Module, dict[str, Any]]:
    """A float32 CPU module computing encode_text on ids cut to any length, plus its spec."""
    import copy

    import torch
    from open_clip.model import CLIP, CustomTextCLIP
    from open_clip.transformer import ResidualAttentionBlock, TextTransformer
    from torch import nn

    if isinstance(model, CustomTextCLIP) and isinstance(model.text, TextTransformer):
        tower, pool, eos_id = model.text, model.text.pool_type, model.text.eos_id
        if model.text.cls_emb is not None or model.text.use_pad_mask:
            raise NotImplementedError("text towers with a class token or pad mask (CoCa)")
    elif isinstance(model, CLIP):
        tower, pool, eos_id = model, model.text_pool_type, model.text_eos_id
    else:
        raise NotImplementedError(
            f"ONNX text export does not support {type(model).__name__} "
            "text towers (e.g. Hugging Face); use the torch encoder"
        )
    if pool not in ("argmax", "eos"):
        raise NotImplementedError(f"text pool_type {pool!r} (only 'argmax' and 'eos')")
    blocks = list(tower.transformer.resblocks)
    for block in blocks:
        attn = getattr(block, "attn", None)
        if not (
            type(block) is ResidualAttentionBlock
            and isinstance(attn, nn.MultiheadAttention)
            and attn._qkv_same_embed_dim
            and attn.bias_k is None
            and not attn.add_zero_attn
        ):
            raise NotImplementedError(f"text block {type(block).__name__} (custom attention)")
    causal = tower.attn_mask is not None
    context = tower.positional_embedding.shape[0]

    class TextGraph(nn.Module):
        """encode_text re-stated so the sequence axis (mask, positions, reshapes) is dynamic."""

        def __init__(self) -> None:
            super().__init__()
            self.token_embedding = tower.token_embedding
            self.positional_embedding = tower.positional_embedding
            self.blocks = nn.ModuleList(blocks)
            self.ln_final = tower.ln_final
            self.text_projection = tower.text_projection
            self.register_buffer("attn_mask", tower.attn_mask, persistent=False)

        def attend(self, attn: nn.MultiheadAttention, x: torch.Tensor, mask: Any) -> torch.Tensor:
            heads, width = attn.num_heads, attn.embed_dim
            n, length = x.shape[0], x.shape[1]
            qkv = nn.functional.linear(x, attn.in_proj_weight, attn.in_proj_bias)
            q, k, v = qkv.reshape(n, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
            scores = (q * (width // heads) ** -0.5) @ k.transpose(-1, -2)
            if mask is not None:
                scores = scores + mask
            out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, length, width)
            return attn.out_proj(out)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            length = ids.shape[1]
            x = self.token_embedding(ids) + self.positional_embedding[:length]
            mask = self.attn_mask[:length, :length] if causal else None
            for block in self.blocks:
                x = x + block.ls_1(self.attend(block.attn, block.ln_1(x), mask))
                x = x + block.ls_2(block.mlp(block.ln_2(x)))
            idx = ids.argmax(dim=-1) if pool == "argmax" else (ids == eos_id).int().argmax(-1)
            x = self.ln_final(x[torch.arange(x.shape[0]), idx])  # per-token LN: pool first
            proj = self.text_projection
            if proj is None:
                return x
            return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    graph = TextGraph().eval()
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in graph.parameters()):
        graph = copy.deepcopy(graph).float().cpu()
    with torch.no_grad():
        dim = graph(torch.tensor([[1, 2]])).shape[1]
    spec = {"dim": int(dim), "truncate": causal, "pool": pool, "context": int(context)}
    return graph, {**spec, **_logit_params(model)}


def _logit_params(model: nn.Module) -> dict[str, float]:
    """exp(logit_scale) and, for SigLIP, logit_bias: zero-shot probabilities need them."""
    out = {}
    for name in ("logit_scale", "logit_bias"):
        value = getattr(model, name, None)
        if value is not None:
            value = float(value.detach().float().reshape(-1)[0])
            out[name] = float(np.exp(value)) if name == "logit_scale" else value
    return out


def _convert(raw: Path, precision: str) -> Path:
    """fp16 (weights and compute, fp32 in/out) or dynamic int8 weights; fp32 is unchanged."""
    if precision == "fp32":
        return raw
    import onnx

    out = raw.with_name(f"{precision}.onnx")
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(str(raw)), keep_io_types=True), str(out))
    else:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(raw), str(out), weight_type=QuantType.QInt8, per_channel=True)
    return out


def _optimize(src: Path, dest: Path) -> None:
    """Run ORT's portable (extended) graph fusions once, saving weights as aligned external data."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(dest)
    opts.add_session_config_entry("session.disable_prepacking", "1")
    opts.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", WEIGHTS
    )
    opts.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
    )
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])


def _self_check(
    model: nn.Module, tokenizer: Any, export_dir: Path, manifest: dict[str, Any], dest_dir: Path
) -> float:
    """Min cosine between ONNX and torch embeddings on PROBE_TEXTS; raises below MIN_COSINE."""
    import torch

    encoder = OnnxTextEncoder.__new__(OnnxTextEncoder)
    encoder._open(export_dir, manifest, threads=1)
    got = encoder.embed(list(PROBE_TEXTS))
    device = next(model.parameters()).device
    with torch.no_grad():
        ids = tokenizer(list(PROBE_TEXTS)).to(device)
        ref = model.encode_text(ids, normalize=True).float().cpu().numpy()
    worst = float(np.min(np.sum(got * ref, axis=1)))
    if worst < MIN_COSINE:
        raise OnnxExportError(
            f"ONNX text encoder for {dest_dir} ({manifest['precision']}) disagrees with torch: "
            f"cosine {worst:.5f} < {MIN_COSINE}; use precision='fp32' or the torch encoder"
        )
    return worst


def _versions() -> dict[str, str]:
    """Library versions at export time, for diagnosing a stale export."""
    import onnxruntime
    import open_clip
    import torch

    return {
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
