"""Grad-ECLIP (Zhao et al., ICML 2024): a heatmap from one backward pass, open_clip ViTs only.

The cosine c of the photo with the query is differentiated with respect to the last block's
attention output at the class token (its channel weights); each patch's heat is
ReLU(sum over channels of weight x the patch's value x a loosened spatial weight), the spatial
weight being the cosine of the class token's query with the patch's key, min-max scaled per head
(CLIP's softmax attention is too sparse to weight by). Everything before the last block runs
once without gradients, so it costs about one forward pass plus a backward pass through one block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from imgsearch.errors import ImgsearchError

if TYPE_CHECKING:
    from imgsearch.encoder import Encoder


def _vit_parts(encoder: Encoder):  # type: ignore[no-untyped-def]
    """The visual tower's last block, if it is an open_clip class-token ViT (else a clear error)."""
    visual = encoder.model.visual
    blocks = list(getattr(getattr(visual, "transformer", None), "resblocks", []))
    last = blocks[-1] if blocks else None
    attn = getattr(last, "attn", None)
    ok = (
        hasattr(visual, "_embeds")
        and getattr(visual, "attn_pool", None) is None
        and getattr(visual, "pool_type", None) == "tok"
        and getattr(attn, "in_proj_weight", None) is not None
        and getattr(attn, "batch_first", False)
    )
    if not ok:
        raise ImgsearchError(
            f"explain method 'gradeclip' needs an open_clip ViT with a class token; "
            f"model {encoder.spec.label()} is not one: use --method occlusion"
        )
    return visual, blocks, last


def gradeclip_heat(
    encoder: Encoder, pixels: npt.NDArray[np.uint8], query: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float32], float]:
    """(H, W) Grad-ECLIP heat of `query` (unit vector) over `pixels` (H, W, 3), and the cosine."""
    import torch
    import torch.nn.functional as F

    visual, blocks, last = _vit_parts(encoder)
    attn = last.attn
    heads, d = attn.num_heads, attn.embed_dim
    hd = d // heads
    x = torch.from_numpy(np.ascontiguousarray(pixels[None])).permute(0, 3, 1, 2).float()
    x = ((x.to(encoder._mean.device) - encoder._mean) / encoder._std).to(encoder.dtype)
    target = torch.as_tensor(query, dtype=torch.float32, device=x.device)
    with torch.no_grad():
        h = visual._embeds(x)
        for block in blocks[:-1]:
            h = block(h)
        q, k, v = F.linear(last.ln_1(h), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        n = q.shape[1]
        qh, kh, vh = (t.reshape(1, n, heads, hd).transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax(qh @ kh.transpose(-1, -2) / hd**0.5, dim=-1)
        mixed = (weights @ vh).transpose(1, 2).reshape(1, n, d)
    with torch.enable_grad():
        mixed = mixed.detach().requires_grad_(True)  # in the model's dtype (fp16 on CUDA)
        out = h + last.ls_1(attn.out_proj(mixed))
        out = out + last.ls_2(last.mlp(last.ln_2(out)))
        pooled, _ = visual._pool(out)
        if visual.proj is not None:
            pooled = pooled @ visual.proj
        cosine = F.normalize(pooled.float(), dim=-1)[0] @ target
        (grad,) = torch.autograd.grad(cosine, mixed)
    with torch.no_grad():
        channel = grad[0, 0].float().reshape(heads, 1, hd)  # d cosine / d attn output, class token
        spatial = F.cosine_similarity(qh[0, :, :1].float(), kh[0, :, 1:].float(), dim=-1)
        low = spatial.min(dim=1, keepdim=True).values
        high = spatial.max(dim=1, keepdim=True).values
        spatial = (spatial - low) / (high - low).clamp_min(1e-12)  # (heads, patches)
        per_head = (channel * vh[0, :, 1:].float()).sum(-1)  # (heads, patches)
        heat = F.relu((spatial * per_head).sum(0)).cpu().numpy()
    g = int(round(np.sqrt(len(heat))))
    grid = heat.reshape(g, g)
    hgt, wid = pixels.shape[:2]
    up = np.kron(grid, np.ones((-(-hgt // g), -(-wid // g))))[:hgt, :wid]
    return up.astype(np.float32), float(cosine.detach())
