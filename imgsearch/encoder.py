"""Model spec -> Encoder: the only module that imports torch and open_clip.

`load_encoder` is the one entry point. Model names, pretrained tags, checkpoint files and the
`hf-hub:` / `local-dir:` schemas all go to open_clip's factory unchanged; failures become a
one-paragraph ModelError.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from imgsearch import lazy, modelspec
from imgsearch.errors import ModelError
from imgsearch.modelspec import RANDOM, ModelSpec, PreprocessSpec

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:
    np = lazy.numpy  # loaded on first use: see imgsearch/lazy.py

log = logging.getLogger(__name__)
SCHEMAS = ("hf-hub:", "local-dir:")
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def resolve_device(setting: str = "auto") -> str:
    """auto -> cuda, then mps, then cpu; an explicit device is checked for availability."""
    import torch

    if setting == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(
            f"device '{setting}' was asked for, but CUDA is not available here; use --device cpu"
        )
    if setting == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ModelError(
            "device 'mps' was asked for, but MPS is not available here; use --device cpu"
        )
    if setting not in ("cpu", "mps") and not setting.startswith("cuda"):
        raise ModelError(f"unknown device '{setting}'; use auto, cpu, cuda, cuda:N or mps")
    return setting


def normalize_model(name: str, pretrained: str) -> tuple[str, str]:
    """Canonical (name, pretrained) as stored in a library: absolute paths, '' for schema models."""
    if name.startswith("local-dir:"):
        folder = Path(name[len("local-dir:") :]).expanduser()
        if not folder.is_dir():
            raise ModelError(
                f"model folder {folder} (from --model {name}) does not exist; "
                f"a local-dir: model is a "
                f"folder holding open_clip_config.json and the weights file"
            )
        return f"local-dir:{folder.resolve()}", ""
    if name.startswith("hf-hub:"):
        return name, ""
    if not pretrained.strip():
        raise ModelError(
            f"model {name}: the pretrained setting is empty; give a pretrained tag (e.g. "
            f"laion2b_s34b_b79k), a checkpoint file, or 'none' for random weights"
        )
    if pretrained.lower() == RANDOM:
        return name, RANDOM
    looks_like_file = (
        os.sep in pretrained
        or pretrained.endswith(CHECKPOINT_SUFFIXES)
        or Path(pretrained).exists()
    )
    if looks_like_file:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise ModelError(f"checkpoint file {path} (from --pretrained) does not exist")
        return name, str(path.resolve())
    return name, pretrained


def check_model_name(name: str, pretrained: str) -> None:
    """Fail now, with the same ModelError as loading would, on a model name open_clip does not
    know (no weights are read): `index` checks before it creates a library."""
    name, pretrained = normalize_model(name, pretrained)
    if name.startswith(SCHEMAS) or name in _config_names():
        return  # a known architecture; its pretrained tag is checked when it loads
    _check_name(name, pretrained)  # imports open_clip (seconds) only for a name it lacks


def _config_names() -> frozenset[str]:
    """open_clip's architecture names, read from its model_configs/ folder without importing
    it (2-4 s with torch), so that the check does not delay decoding that starts before that."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    folders = list(spec.submodule_search_locations or []) if spec else []
    return frozenset(p.stem for f in folders for p in (Path(f) / "model_configs").glob("*.json"))


def _hub_host() -> str:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return urlparse(endpoint).hostname or "huggingface.co"


def _reachable(host: str, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _offline_unless_reachable() -> Iterator[bool]:
    """Use only cached weights when the hub cannot be reached, instead of ~45 s of retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or _reachable(_hub_host()):
        yield bool(constants.HF_HUB_OFFLINE)
        return
    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield True
    finally:
        constants.HF_HUB_OFFLINE = old


def _offline_message(label: str, cause: BaseException) -> str:
    lines = str(cause).strip().splitlines()
    upstream = textwrap.shorten(lines[0] if lines else "", width=200, placeholder=" ...")
    return (
        f"could not load the weights of model {label}: they are downloaded from the Hugging Face "
        f"hub on first use (then cached), which needs network access, and this machine could not "
        f"get them ({type(cause).__name__}: {upstream}). Offline, pass a "
        f"local copy: a checkpoint file with --pretrained /path/to/open_clip_model.safetensors "
        f"(.pt/.bin work too), or a folder with open_clip_config.json and the weights via "
        f"--model local-dir:/path/to/folder. Set them once in config.toml to make them the default."
    )


class Encoder:
    """A loaded open_clip model: pixels or texts in, L2-normalised float32 vectors out."""

    def __init__(
        self, model: Any, tokenizer: Any, spec: ModelSpec, device: str, precision: str = "fp32"
    ) -> None:
        import torch

        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.device = device
        self.precision = precision
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
        pre = spec.preprocess
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(pre.mean, device=device, dtype=torch.float32).view(shape) * 255
        self._std = torch.tensor(pre.std, device=device, dtype=torch.float32).view(shape) * 255

    @property
    def dim(self) -> int:
        return self.spec.dim

    def embed_pixels(self, pixels: Any) -> npt.NDArray[np.float32]:
        """(N, H, W, 3) uint8 model inputs -> (N, dim) vectors.

        `pixels` is a numpy array (CPU decode, see imgsearch.decode) or a torch tensor that may
        already sit on the model's device (GPU decode, see indexer.gpudecode).
        """
        import torch

        with torch.inference_mode():
            if isinstance(pixels, torch.Tensor):
                batch = pixels.to(self.device, non_blocking=True)
            else:
                batch = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device)
            batch = batch.permute(0, 3, 1, 2).float().sub_(self._mean).div_(self._std)
            feats = self.model.encode_image(batch.to(self.dtype))
            return _normalize(feats)

    def token_count(self, text: str) -> tuple[int, int] | None:
        """(tokens with start/end markers, context length), when the tokenizer can tell."""
        tok = self.tokenizer
        limit = getattr(tok, "context_length", None)
        try:
            if hasattr(tok, "encode") and hasattr(tok, "sot_token_id"):  # open_clip's CLIP BPE
                return len(tok.encode(text)) + 2, int(limit)
            inner = getattr(tok, "tokenizer", None)  # open_clip's HFTokenizer
            if inner is not None and limit:
                return len(inner(text)["input_ids"]), int(limit)
        except Exception:  # an unusual tokenizer: no warning rather than a failed query
            return None
        return None

    @property
    def takes_language(self) -> bool:
        """True when the tokenizer has a source-language token (NLLB): see embed_texts(lang=)."""
        return hasattr(self.tokenizer, "set_lang_fn")

    def embed_texts(self, texts: Sequence[str], lang: str | None = None) -> npt.NDArray[np.float32]:
        """Texts -> (N, dim) vectors; `lang` is an NLLB code (kor_Hang), ignored by others."""
        import torch

        with torch.inference_mode():
            tokens = self._tokenize(list(texts), lang).to(self.device)
            return _normalize(self.model.encode_text(tokens))

    def _tokenize(self, texts: list[str], lang: str | None) -> Any:
        if lang is None or not self.takes_language:
            return self.tokenizer(texts)
        hf = self.tokenizer.tokenizer
        if hf.convert_tokens_to_ids(lang) in (None, hf.unk_token_id):
            raise ModelError(
                f"language code {lang!r} is not known to the tokenizer of {self.spec.label()}; "
                f"NLLB codes look like kor_Hang, eng_Latn, jpn_Jpan (--lang / setting 'lang')"
            )
        # open_clip's HFTokenizer.set_language is undone by transformers on each call (it
        # re-applies src_lang), so the language is switched through src_lang itself.
        before = hf.src_lang
        hf.src_lang = lang
        try:
            return self.tokenizer(texts)
        finally:
            hf.src_lang = before


def _normalize(feats: Any) -> npt.NDArray[np.float32]:
    out = feats.float().cpu().numpy()
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.maximum(norms, 1e-12)).astype(np.float32)


def load_encoder(
    name: str, pretrained: str, device: str = "auto", precision: str = "auto"
) -> Encoder:
    """Create the model through open_clip's factory; every failure is a clear ModelError.

    Loaded models are kept for the life of the process, so Searchers share one copy.
    `precision` (the `torch_precision` setting): auto is fp16 on CUDA and fp32 elsewhere; bf16
    is open_clip's mixed bf16 (opt-in: fast on CPUs with AMX). ONNX exports are made from fp32.
    """
    name, pretrained = normalize_model(name, pretrained)
    dev = resolve_device(device)
    if precision == "auto":
        precision = "fp16" if dev.startswith("cuda") else "fp32"
    encoder = _load(name, pretrained, dev, precision)
    if modelspec.remembered(name, pretrained) != encoder.spec:
        modelspec.remember(encoder.spec)  # lets the next `index` decode while this loads
    return encoder


@functools.lru_cache(maxsize=4)
def _load(name: str, pretrained: str, dev: str, precision: str) -> Encoder:
    label = f"{name} / {pretrained}" if pretrained else name
    if not name.startswith(SCHEMAS):
        _check_name(name, pretrained)
    import open_clip
    import torch

    if dev == "cpu":
        # One model thread per core; more only adds contention with the decode workers.
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    weights = None if pretrained in ("", RANDOM) else pretrained
    if pretrained == RANDOM:
        torch.manual_seed(0)  # "none" names one fixed random model, the same in every process
    try:
        with _offline_unless_reachable(), _quiet_hub_logs():
            model, _, _ = open_clip.create_model_and_transforms(
                name,
                pretrained=weights,
                device=dev,
                precision=precision,
            )
            tokenizer = open_clip.get_tokenizer(name)
    except FileNotFoundError as exc:
        raise ModelError(f"model {label}: {exc}") from exc
    except Exception as exc:  # open_clip raises bare RuntimeError/ValueError/OSError subclasses
        text = str(exc).lower()
        network = any(
            w in text for w in ("download", "connection", "hub", "internet", "offline", "resolve")
        )
        if network or type(exc).__name__ in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
            raise ModelError(_offline_message(label, exc)) from exc
        raise ModelError(f"could not load model {label}: {type(exc).__name__}: {exc}") from exc
    modelspec.warn_if_random(name, pretrained)
    model.eval()
    pre = PreprocessSpec.from_open_clip(open_clip.get_model_preprocess_cfg(model))
    dim = _embed_dim(model, pre, dev)
    spec = ModelSpec(name=name, pretrained=pretrained, dim=dim, preprocess=pre)
    return Encoder(model, tokenizer, spec, dev, precision)


def _embed_dim(model: Any, pre: PreprocessSpec, device: str) -> int:
    dim = getattr(getattr(model, "visual", None), "output_dim", None)
    if isinstance(dim, int):
        return dim
    import torch

    with torch.inference_mode():
        probe = torch.zeros((1, 3, *pre.size), device=device, dtype=next(model.parameters()).dtype)
        return int(model.encode_image(probe).shape[-1])


def _check_name(name: str, pretrained: str) -> None:
    import open_clip

    if name not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if name.lower().replace("/", "-") in m.lower()]
        hint = f" Did you mean: {', '.join(close[:5])}?" if close else ""
        raise ModelError(
            f"unknown model '{name}'. "
            f'`python -c "import open_clip; print(open_clip.list_models())"` '
            f"lists the names; hf-hub:org/repo and local-dir:/path also work.{hint}"
        )
    if pretrained in ("", RANDOM) or os.sep in pretrained:
        return
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        raise ModelError(
            f"model {name} has no pretrained weights tagged '{pretrained}'; known tags: "
            f"{', '.join(tags) or '(none)'}; or pass a checkpoint file with --pretrained /path/file"
        )


@contextlib.contextmanager
def _quiet_hub_logs() -> Iterator[None]:
    """open_clip and huggingface_hub log each failed try; the user gets one message instead."""
    loggers = [logging.getLogger(n) for n in ("", "huggingface_hub", "huggingface_hub.utils._http")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
