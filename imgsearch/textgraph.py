"""open_clip text towers re-stated as torch modules that export to ONNX with a dynamic length.

Two kinds (build time only; imports torch):

* built-in `TextTransformer` / CLIP text (input `input_ids`): argmax / eos pooling behind a
  causal mask lets ids be cut to the longest real row; `first` / `last` pooling (SigLIP) and
  bidirectional towers get the full, padded context, as open_clip feeds them.
* Hugging Face `HFTextEncoder` towers (inputs `input_ids`, `attention_mask`): XLM-R, mT5, NLLB's
  M2M-100 encoder, BERT; mean or CLS pooling, then the projection. Pads are masked out, so ids
  are cut to the longest real row too.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

CUT_POOLS = ("argmax", "eos")  # pooling at the EOT token: with a causal mask, later pads are unseen
FULL_POOLS = ("first", "last")  # positions fixed in the padded context: the whole context is fed
HF_POOLERS = {  # open_clip pooler class -> manifest name
    "MeanPooler": "mean",
    "ClsPooler": "cls",
    "ClsLastHiddenStatePooler": "cls",
}


def text_graph(model: nn.Module) -> tuple[nn.Module, dict[str, Any]]:
    """A float32 CPU module computing encode_text (unnormalised), plus its manifest spec."""
    from open_clip.hf_model import HFTextEncoder
    from open_clip.model import CustomTextCLIP

    if isinstance(model, CustomTextCLIP) and isinstance(model.text, HFTextEncoder):
        return _hf_graph(model.text)
    return _clip_graph(model)


def _float_cpu(graph: nn.Module) -> nn.Module:
    import torch

    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in graph.parameters()):
        graph = copy.deepcopy(graph).float().cpu()
    return graph.eval()


def _hf_graph(text: Any) -> tuple[nn.Module, dict[str, Any]]:
    """HFTextEncoder.forward with the attention mask as a graph input (eager attention)."""
    import torch
    from torch import nn

    pooler = HF_POOLERS.get(type(text.pooler).__name__)
    if pooler is None:
        raise NotImplementedError(f"HF text pooler {type(text.pooler).__name__}")
    transformer = copy.deepcopy(text.transformer)  # the live model keeps its attention kernel
    if hasattr(transformer, "set_attn_implementation"):
        transformer.set_attn_implementation("eager")  # sdpa's mask helpers do not trace
    pad_id = text.config.pad_token_id

    class HFGraph(nn.Module):
        """input_ids, attention_mask -> projected pooled features (open_clip HFTextEncoder)."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer
            self.pooler = text.pooler
            self.proj = text.proj

        def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            out = self.transformer(input_ids=ids, attention_mask=attention_mask)
            return self.proj(self.pooler(out, attention_mask))

    graph = _float_cpu(HFGraph())
    probe = torch.tensor([[0, 5, 2]])
    with torch.no_grad():
        dim = graph(probe, torch.ones_like(probe)).shape[1]
    spec = {
        "tower": "hf",
        "inputs": ["input_ids", "attention_mask"],
        "dim": int(dim),
        "pool": pooler,
        "truncate": True,
        "context": int(getattr(text.config, "max_position_embeddings", 0) or 0),
        "mask_pad_id": int(pad_id if pad_id is not None else 0),
    }
    return graph, spec


def _clip_graph(model: nn.Module) -> tuple[nn.Module, dict[str, Any]]:
    """CLIP / built-in TextTransformer towers; NotImplementedError for what cannot be exported."""
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
            f"text towers ({type(getattr(model, 'text', None)).__name__}); use the torch encoder"
        )
    if pool not in CUT_POOLS + FULL_POOLS:
        raise NotImplementedError(f"text pool_type {pool!r} (only {CUT_POOLS + FULL_POOLS})")
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
            if pool == "first":
                x = x[:, 0]
            elif pool == "last":
                x = x[:, -1]
            else:
                idx = ids.argmax(dim=-1) if pool == "argmax" else (ids == eos_id).int().argmax(-1)
                x = x[torch.arange(x.shape[0]), idx]
            x = self.ln_final(x)  # per-token LN: pooling first is exact
            proj = self.text_projection
            if proj is None:
                return x
            return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    graph = _float_cpu(TextGraph())
    with torch.no_grad():
        dim = graph(torch.tensor([[1, 2]])).shape[1]
    spec = {
        "tower": "clip",
        "inputs": ["input_ids"],
        "dim": int(dim),
        "truncate": causal and pool in CUT_POOLS,
        "pool": pool,
        "context": int(context),
    }
    return graph, spec
