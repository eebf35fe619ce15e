"""Zero-shot classifiers: label set x template set -> one unit vector per label, cached.

Ensembling is open_clip's `build_zero_shot_classifier`: every prompt embedding L2-normalised,
averaged per label, renormalised. Texts go through the library's ONNX text encoder (no torch);
a model whose text tower could not be exported falls back to the torch encoder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from imgsearch.clip.sets import LabelSet, TemplateSet, load_label_set, load_template_set
from imgsearch.errors import ImgsearchError

if TYPE_CHECKING:
    from imgsearch.library import Library

log = logging.getLogger(__name__)
CACHE_DIR = "clip-cache"
FORMAT = 1
# CLIP clamps exp(logit_scale) at 100 and every trained CLIP/OpenCLIP model ends there; used
# only for a text export written before the manifest recorded the model's own value.
DEFAULT_LOGIT_SCALE = 100.0

Embed = Callable[[list[str]], npt.NDArray[np.float32]]


@dataclass(frozen=True)
class TextModel:
    """The library's text tower: embed(texts) -> (N, dim) unit vectors, plus its logit scale."""

    embed: Embed
    logit_scale: float
    logit_bias: float | None
    key: str  # identity of the weights, for the classifier cache


@dataclass(frozen=True)
class Classifier:
    """(L, dim) unit rows, one per label; scores are cosines, logits scale * cosine (+ bias)."""

    label_set: LabelSet
    templates: TemplateSet
    weights: npt.NDArray[np.float32]
    logit_scale: float
    logit_bias: float | None

    @property
    def names(self) -> list[str]:
        return self.label_set.names

    def scores(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """(N, dim) image vectors -> (N, L) cosine similarities."""
        return np.asarray(vectors, dtype=np.float32) @ self.weights.T

    def probabilities(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Softmax over the labels of logit_scale * cosine, as in the CLIP paper."""
        return softmax(self.logit_scale * self.scores(vectors))


def softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def ensemble(
    embed: Embed, label_set: LabelSet, templates: TemplateSet, batch: int = 1024
) -> npt.NDArray[np.float32]:
    """(L, dim): per label, the renormalised mean of its normalised prompt embeddings."""
    prompts: list[str] = []
    owner: list[int] = []
    for i, label in enumerate(label_set.labels):
        texts = label.texts(templates.templates)
        prompts += texts
        owner += [i] * len(texts)
    rows = []
    for start in range(0, len(prompts), batch):
        emb = np.asarray(embed(prompts[start : start + batch]), dtype=np.float32)
        rows.append(emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12))
    emb = np.concatenate(rows)
    index = np.asarray(owner)
    counts = np.bincount(index, minlength=len(label_set.labels)).astype(np.float32)
    sums = np.zeros((len(label_set.labels), emb.shape[1]), np.float32)
    np.add.at(sums, index, emb)
    means = sums / counts[:, None]
    return (means / np.linalg.norm(means, axis=1, keepdims=True)).astype(np.float32)


# ---- the library's text model ------------------------------------------------------------------
def text_model(library: Library) -> TextModel:
    """The ONNX text encoder exported into the library, else the torch one (same vectors)."""
    from imgsearch.library import TEXT_ENCODER_DIR

    spec = library.model_spec()
    if spec is None:
        raise ImgsearchError(f"library {library.path} is empty; index some photos first")
    folder = library.path / TEXT_ENCODER_DIR
    try:
        from imgsearch import textonnx

        if textonnx.exported(folder):
            manifest = json.loads((folder / textonnx.MANIFEST).read_text(encoding="utf-8"))
            encoder = textonnx.OnnxTextEncoder(folder, threads=max(1, os.cpu_count() or 1))
            if encoder.dim == spec.dim:
                scale = manifest.get("logit_scale")
                if scale is None:
                    log.info("%s predates logit_scale in the manifest; using 100", folder)
                key = json.dumps([spec.to_json(), manifest["files"], manifest["versions"]])
                return TextModel(
                    encoder.embed,
                    float(scale or DEFAULT_LOGIT_SCALE),
                    manifest.get("logit_bias"),
                    hashlib.sha256(key.encode()).hexdigest()[:20],
                )
    except ImportError:
        pass
    from imgsearch.encoder import load_encoder

    enc = load_encoder(spec.name, spec.pretrained, "cpu")
    scale = float(enc.model.logit_scale.exp()) if hasattr(enc.model, "logit_scale") else 100.0
    bias = getattr(enc.model, "logit_bias", None)
    key = hashlib.sha256(f"torch\n{spec.to_json()}".encode()).hexdigest()[:20]
    return TextModel(
        enc.embed_texts, scale, None if bias is None else float(bias.reshape(-1)[0]), key
    )


def classifier(
    library: Library,
    labels: str | LabelSet,
    templates: str | TemplateSet | None = None,
    *,
    model: TextModel | None = None,
) -> Classifier:
    """The zero-shot classifier of a label set on the library's model, from cache when made."""
    label_set = load_label_set(labels) if isinstance(labels, str) else labels
    tset = templates if isinstance(templates, TemplateSet) else None
    if tset is None:
        tset = load_template_set(templates or label_set.templates)
    model = model or text_model(library)
    key = json.dumps([FORMAT, model.key, label_set.digest(), list(tset.templates)])
    path = library.path / CACHE_DIR / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"
    weights = _load_cached(path, len(label_set.labels))
    if weights is None:
        weights = ensemble(model.embed, label_set, tset)
        _save_cached(path, weights)
    return Classifier(label_set, tset, weights, model.logit_scale, model.logit_bias)


def _load_cached(path: Path, rows: int) -> npt.NDArray[np.float32] | None:
    try:
        weights = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return weights if weights.shape[0] == rows and weights.dtype == np.float32 else None


def _save_cached(path: Path, weights: npt.NDArray[np.float32]) -> None:
    """Atomic write; a read-only library simply recomputes next time."""
    try:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, weights)
        os.replace(tmp, path)
    except OSError as exc:
        log.info("classifier cache not written (%s)", exc)
