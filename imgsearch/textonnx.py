"""Text towers exported to ONNX, so a cold query answers without importing torch.

`export_text_encoder` (build time, torch) writes a self-contained folder: an ORT-optimised
graph, its weights as page-aligned external data (memory-mapped at load, so load time does not
grow with model size), the tokenizer's file (CLIP BPE merges, or a Hugging Face tokenizer.json)
and, written last, `manifest.json`. `OnnxTextEncoder` (query time) needs only onnxruntime, numpy
and, for HF tokenizers, the Rust `tokenizers` library. Towers whose pooled output ignores pads
(EOT pooling behind a causal mask; HF towers with an attention mask) get ids cut to the longest
real sequence instead of padded to the context length. Graph building: `imgsearch.textgraph`.

Manifest format 2 records the tokenizer (kind, file, clean mode, context length), the graph
inputs and the pooling; format 1 (CLIP BPE only) keeps loading.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from imgsearch import exports
from imgsearch.errors import ModelError
from imgsearch.tokenizer import Tokenizer, pad, write_merges

if TYPE_CHECKING:
    from torch import nn

FORMAT_VERSION = 2
READABLE_FORMATS = exports.TEXT_FORMATS
MANIFEST = "manifest.json"
GRAPH = "text_encoder.onnx"
WEIGHTS = "text_encoder.onnx.data"
MERGES = "bpe_merges.txt"
CLIP_BPE = "clip-bpe"
TOKENIZER_ARGS = ("context_length", "clean", "special_tokens")
PRECISIONS = ("fp32", "fp16", "int8")
MIN_COSINE = 0.9999  # export self-check: ONNX vs torch fp32, on every probe text
TOP_K = 10  # ... and the same top-10 over a fixed random library, per probe
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
    "빨간 원",
    "바닷가의 강아지 사진",
    "a photo of 빨간 원 and a 🐶",
)


class OnnxExportError(ModelError):
    """The ONNX text encoder could not be written or does not match torch; use the torch path."""


def exported(export_dir: Path) -> bool:
    """True when `export_dir` holds a complete, readable export (manifest written last)."""
    return exports.is_exported(_read_manifest, export_dir)


def _read_manifest(export_dir: Path) -> dict[str, Any]:
    """Parse and check the manifest and the files it lists (cheap: no model load)."""
    return _upgrade(exports.read_manifest(export_dir, "text encoder", READABLE_FORMATS))


def _upgrade(manifest: dict[str, Any]) -> dict[str, Any]:
    """A format-1 manifest (CLIP BPE, one input) in the format-2 layout."""
    if manifest["format"] == 1:
        manifest = {
            **manifest,
            "tower": "clip",
            "inputs": ["input_ids"],
            "tokenizer": {"kind": CLIP_BPE, "file": MERGES, **manifest["tokenizer"]},
        }
    return manifest


def _load_tokenizer(folder: Path, cfg: dict[str, Any]) -> Any:
    """The torch-free tokenizer a manifest's `tokenizer` entry names."""
    if cfg["kind"] == CLIP_BPE:
        return Tokenizer(folder / cfg["file"], **{k: cfg[k] for k in TOKENIZER_ARGS})
    if cfg["kind"] == "hf":
        from imgsearch import hftokenizer

        return hftokenizer.load(folder, cfg)
    raise ModelError(f"unknown tokenizer kind {cfg['kind']!r} in {folder / MANIFEST}; re-index")


class OnnxTextEncoder:
    """Query-time text encoder: onnxruntime + numpy (+ `tokenizers`) only, never torch."""

    def __init__(self, export_dir: Path, *, threads: int = 1, prepack: bool = False) -> None:
        """prepack=True: ~100 ms slower load, 2-3x faster queries after (long-lived processes)."""
        export_dir = Path(export_dir)
        self._open(export_dir, _read_manifest(export_dir), threads, prepack)

    def _open(
        self, export_dir: Path, manifest: dict[str, Any], threads: int, prepack: bool = False
    ) -> None:
        """Load tokenizer and session as `manifest` describes (export's self-check reuses it).
        The session is made on a second thread while this one reads the tokenizer's tables:
        onnxruntime releases the GIL while it loads, and a cold query waits for both."""
        import threading

        import onnxruntime as ort

        self.dim: int = manifest["dim"]
        self.precision: str = manifest["precision"]
        self.truncate: bool = manifest["truncate"]
        self.inputs: list[str] = manifest["inputs"]
        self._mask_pad_id: int = manifest.get("mask_pad_id", 0)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # 1 measured fastest for one short query on 2 cores
        opts.inter_op_num_threads = 1
        # Optimised at export time; skipping it and weight pre-packing keeps weights mmapped.
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.add_session_config_entry("session.disable_prepacking", "0" if prepack else "1")
        made: list[Any] = []

        def make() -> None:
            try:
                made.append(
                    ort.InferenceSession(
                        str(export_dir / GRAPH), opts, providers=["CPUExecutionProvider"]
                    )
                )
            except Exception as exc:  # onnxruntime raises its own untyped errors
                made.append(exc)

        loading = threading.Thread(target=make, name="imgsearch-text-session", daemon=True)
        loading.start()
        try:
            self.tokenizer = _load_tokenizer(export_dir, manifest["tokenizer"])
        finally:
            loading.join()
        if isinstance(made[0], Exception):
            raise ModelError(f"cannot load {export_dir / GRAPH}: {made[0]}; re-index") from made[0]
        self.session = made[0]

    def token_count(self, text: str) -> tuple[int, int] | None:
        """(tokens with SOT/EOT, context length): more than fits is cut by `embed`; None for
        HF tokenizers (they cut while encoding, so the length is not known here)."""
        if not isinstance(self.tokenizer, Tokenizer):
            return None
        return len(self.tokenizer.encode(text)) + 2, self.tokenizer.context_length

    @property
    def takes_language(self) -> bool:
        """True when the tokenizer has a source-language token (NLLB): see `embed(lang=)`."""
        return bool(getattr(self.tokenizer, "takes_language", False))

    def _rows(self, texts: list[str], lang: str | None) -> list[list[int]]:
        if self.takes_language:
            return self.tokenizer.encode_batch(texts, lang)
        return self.tokenizer.encode_batch(texts)

    def _pad(self, rows: list[list[int]]) -> npt.NDArray[np.int64]:
        width = None if self.truncate else self.tokenizer.context_length
        if isinstance(self.tokenizer, Tokenizer):
            return pad(rows, width)
        return self.tokenizer.pad(rows, width)

    def feeds(self, ids: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[np.int64]]:
        """Graph inputs for padded ids: the ids, plus the attention mask HF towers take."""
        out = {"input_ids": ids}
        if "attention_mask" in self.inputs:  # what open_clip's HFTextEncoder derives from ids
            out["attention_mask"] = (ids != self._mask_pad_id).astype(np.int64)
        return out

    def embed(self, texts: list[str], lang: str | None = None) -> npt.NDArray[np.float32]:
        """(N, dim) L2-normalised float32 vectors, batched by length to minimise padding.

        `lang`: an NLLB language code (kor_Hang); ignored by tokenizers without one.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        rows = self._rows(list(texts), lang)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        for start in range(0, len(order), BATCH):
            chunk = order[start : start + BATCH]
            ids = self._pad([rows[i] for i in chunk])
            out[chunk] = self.session.run(None, self.feeds(ids))[0]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def export_text_encoder(
    model: nn.Module, tokenizer: Any, dest_dir: Path, *, precision: str = "fp32"
) -> Path:
    """Write the ONNX text encoder of an open_clip model to `dest_dir`; self-checked vs torch.

    Raises NotImplementedError for towers/tokenizers this export cannot reproduce exactly
    (SigLIP's sentencepiece tokenizers without tokenizer.json, CoCa class tokens, custom
    attention blocks, HF poolers other than mean / CLS).
    """
    import shutil
    import tempfile

    from imgsearch.textgraph import text_graph

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    kind = _tokenizer_kind(tokenizer)
    graph, spec = text_graph(model)
    spec = {**spec, **_logit_params(model)}
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    (dest_dir / MANIFEST).unlink(missing_ok=True)  # from here on the folder is incomplete
    for stale in dest_dir.glob(".export-*"):  # left by an interrupted export
        shutil.rmtree(stale, ignore_errors=True)

    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".export-") as name:
        tmp = Path(name)
        tok_cfg = _write_tokenizer(kind, tokenizer, tmp)
        ours = _load_tokenizer(tmp, tok_cfg)
        probes = list(PROBE_TEXTS)
        if not np.array_equal(ours(probes), np.asarray(tokenizer(probes))):
            raise OnnxExportError(f"torch-free tokenizer for {dest_dir} differs from open_clip's")
        manifest = {
            "format": FORMAT_VERSION,
            "precision": precision,
            "files": {},
            **spec,
            "tokenizer": tok_cfg,
            "versions": _versions(),
        }
        try:
            encoder = OnnxTextEncoder.__new__(OnnxTextEncoder)
            encoder.tokenizer, encoder.truncate, encoder.inputs = ours, True, spec["inputs"]
            encoder._mask_pad_id = spec.get("mask_pad_id", 0)
            sample = encoder.feeds(encoder._pad(encoder._rows(["a photo of a dog", "x"], None)))
            raw = _trace(graph, sample, tmp)
            _optimize(_convert(raw, precision), tmp / GRAPH)
        except Exception as exc:  # torch.onnx / onnxruntime raise many unrelated types
            raise OnnxExportError(f"ONNX export to {dest_dir} failed: {exc}") from exc
        manifest["files"] = {n: (tmp / n).stat().st_size for n in (GRAPH, WEIGHTS, tok_cfg["file"])}
        manifest["min_probe_cosine"] = _self_check(model, tokenizer, tmp, manifest, dest_dir)
        for file in manifest["files"]:
            os.replace(tmp / file, dest_dir / file)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        os.replace(tmp / MANIFEST, dest_dir / MANIFEST)  # last: marks the export complete
    return dest_dir


def _trace(graph: nn.Module, sample: dict[str, npt.NDArray[np.int64]], folder: Path) -> Path:
    """Legacy TorchScript ONNX export (dynamo needs onnxscript) with dynamic batch and length."""
    import torch

    path = folder / "raw.onnx"
    names = list(sample)
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "seq"} for n in names}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about the dynamic length
        torch.onnx.export(
            graph,
            tuple(torch.from_numpy(sample[n]) for n in names),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=names,
            output_names=["text_features"],
            dynamic_axes={**axes, "text_features": {0: "batch"}},
        )
    return path


def _tokenizer_kind(tokenizer: Any) -> str:
    """The kind, clip-bpe or hf; NotImplementedError for tokenizers without a torch-free twin."""
    from open_clip import tokenizer as oc_tok

    if isinstance(tokenizer, oc_tok.SimpleTokenizer):
        if tokenizer.reduction_fn is not None:
            raise NotImplementedError("tokenizers with a reduction_mask are not supported")
        return CLIP_BPE
    if isinstance(tokenizer, oc_tok.HFTokenizer):
        return "hf"
    raise NotImplementedError(
        f"ONNX text export supports open_clip's SimpleTokenizer (CLIP BPE) and HFTokenizer, not "
        f"{type(tokenizer).__name__}; the torch text encoder will be used"
    )


def _write_tokenizer(kind: str, tokenizer: Any, folder: Path) -> dict[str, Any]:
    """Write the tokenizer's file into `folder`; return the manifest's `tokenizer` entry."""
    if kind == "hf":
        from imgsearch import hftokenizer

        return hftokenizer.describe(tokenizer, folder)

    from imgsearch.hftokenizer import clean_mode

    clean = clean_mode(tokenizer)
    merges = sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.__getitem__)
    write_merges((" ".join(m) for m in merges), folder / MERGES)
    cfg = {
        "kind": CLIP_BPE,
        "file": MERGES,
        "context_length": tokenizer.context_length,
        "clean": clean,
        "special_tokens": [tokenizer.decoder[i] for i in tokenizer.all_special_ids],
        "vocab_size": tokenizer.vocab_size,
    }
    if _load_tokenizer(folder, cfg).encoder != tokenizer.encoder:
        raise OnnxExportError(
            f"torch-free CLIP BPE vocabulary in {folder} differs from open_clip's"
        )
    return cfg


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
    """Min cosine ONNX vs torch on PROBE_TEXTS, plus the same top-10 over a random library."""
    import torch

    encoder = OnnxTextEncoder.__new__(OnnxTextEncoder)
    encoder._open(export_dir, manifest, threads=1)
    got = encoder.embed(list(PROBE_TEXTS))
    reference = _fp32_text_copy(model)
    with torch.no_grad():
        ids = tokenizer(list(PROBE_TEXTS))
        ref = reference.encode_text(ids, normalize=True).numpy()
    worst = float(np.min(np.sum(got * ref, axis=1)))
    label = f"ONNX text encoder for {dest_dir} ({manifest['precision']})"
    if worst < MIN_COSINE:
        raise OnnxExportError(
            f"{label} disagrees with torch: cosine {worst:.5f} < {MIN_COSINE}; "
            f"use precision='fp32' or the torch encoder"
        )
    library = np.random.default_rng(0).standard_normal((1000, ref.shape[1])).astype(np.float32)
    library /= np.linalg.norm(library, axis=1, keepdims=True)
    ref_scores = ref @ library.T
    top_got = np.argsort(-(got @ library.T), axis=1)[:, :TOP_K]
    top_ref = np.argsort(-ref_scores, axis=1)[:, :TOP_K]
    rows = np.arange(len(ref))[:, None]
    # Same ten ids; a swap in order only between ids whose torch scores differ by less than
    # this probe's vector error (a unit library vector's score can move by that much).
    error = np.linalg.norm(got - ref, axis=1)[:, None]
    gap = np.abs(ref_scores[rows, top_got] - ref_scores[rows, top_ref])
    same_ids = all(set(a) == set(b) for a, b in zip(top_got, top_ref))
    if not same_ids or ((top_got != top_ref) & (gap > error + 1e-6)).any():
        raise OnnxExportError(f"{label} ranks a random library differently from torch (top-10)")
    return worst


def _fp32_text_copy(model: nn.Module) -> nn.Module:
    """`model` itself when float32 on CPU, else a float32 CPU copy without its image tower.

    The reference is fp32 whatever the indexing precision (CUDA runs fp16), and copying only the
    text half keeps a large model's export from doubling its memory.
    """
    import copy

    import torch

    if all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters()):
        return model
    skip = {id(model.visual): None} if getattr(model, "visual", None) is not None else {}
    return copy.deepcopy(model, memo=skip).float().cpu().eval()


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


def _logit_params(model: nn.Module) -> dict[str, float]:
    """exp(logit_scale) and, for SigLIP, logit_bias: zero-shot probabilities need them."""
    out = {}
    for name in ("logit_scale", "logit_bias"):
        value = getattr(model, name, None)
        if value is not None:
            value = float(value.detach().float().reshape(-1)[0])
            out[name] = float(np.exp(value)) if name == "logit_scale" else value
    return out
