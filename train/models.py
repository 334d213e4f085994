"""HT+ (Guo et al., TPAMI 2022) and a text-guided HT+, from TRAINING.md's description.

HT+ cuts the composite (RGB in [0, 1]) and its mask into 4x4 patches, embeds each
linearly, runs 9 post-norm transformer layers over all of them with a fixed 2-D sine
encoding added to queries and keys, and decodes every token back to a 4x4 RGB patch
(transposed convolution + tanh). The output is the harmonized image: the raw tanh,
trained against targets in [0, 1] and clipped when read, as the authors' code does
(``ModelConfig`` keeps this project's earlier choices as options); metrics composite
it into the background (``blend``). ``authors_state_dict`` maps the authors'
``latest_net_G.pth`` onto this module.

The text-guided model adds one thing per layer: shift, scale and a residual gain for both
sub-blocks, regressed from the phrase's CLIP embedding (and the caption's) by a linear
map initialised to zero (DiT's adaLN-Zero). HT+ is post-norm, so the modulation goes
after each LayerNorm and the gain multiplies the residual branch by (1 + g); at
initialisation every term is zero and the model computes exactly what HT+ computes.

``ClipSegHT`` harmonizes the region a phrase names: a frozen CLIPSeg and a refinement
head (``train.region``) find it, and HT+ (or the text-guided HT+) takes it as its mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from schemas.train_config import ModelConfig


def sine_encoding(h: int, w: int, dim: int, temperature: float = 10_000.0,
                  normalize: bool = False) -> torch.Tensor:
    """DETR's fixed 2-D sine encoding: (h*w, dim), y features then x.

    For each axis, positions 1..n (``normalize``: scaled to 2*pi*p/n, DETR's option; HT's
    code leaves them as they are) are divided by temperature ** (2*floor(i/2) / (dim/2));
    even features take the sine, odd the cosine.
    """
    half = dim // 2
    y = torch.arange(1, h + 1, dtype=torch.float32)
    x = torch.arange(1, w + 1, dtype=torch.float32)
    if normalize:
        y, x = y / (h + 1e-6) * (2 * math.pi), x / (w + 1e-6) * (2 * math.pi)
    i = torch.arange(half, dtype=torch.float32)
    freq = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / half)

    def axis(p: torch.Tensor) -> torch.Tensor:
        a = p[:, None] / freq
        return torch.where(i.long() % 2 == 0, a.sin(), a.cos())

    py = axis(y)[:, None, :].expand(h, w, half)
    px = axis(x)[None, :, :].expand(h, w, half)
    return torch.cat([py, px], dim=-1).reshape(h * w, dim)


class Attention(nn.Module):
    """Multi-head self-attention with one packed input projection (as nn.MultiheadAttention,
    so the parameter count is the paper's); queries and keys see the positions, values not."""

    def __init__(self, dim: int, heads: int, fused: bool = True) -> None:
        super().__init__()
        self.heads, self.fused = heads, fused
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        w, bias = self.in_proj.weight, self.in_proj.bias
        qk = F.linear(x + pos, w[: 2 * d], bias[: 2 * d])
        v = F.linear(x, w[2 * d :], bias[2 * d :])
        q, k = qk.chunk(2, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
            out = weights @ v
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class Layer(nn.Module):
    """A post-norm encoder layer (DETR's): x = LN(x + attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, dim: int, heads: int, ffn: int, fused: bool) -> None:
        super().__init__()
        self.attn = Attention(dim, heads, fused)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, mod: tuple[torch.Tensor, ...] | None = None
    ) -> torch.Tensor:
        if mod is None:
            x = self.norm1(x + self.attn(x, pos))
            return self.norm2(x + self.ffn(x))
        shift1, scale1, gain1, shift2, scale2, gain2 = (m[:, None, :] for m in mod)
        x = self.norm1(x + (1 + gain1) * self.attn(x, pos)) * (1 + scale1) + shift1
        return self.norm2(x + (1 + gain2) * self.ffn(x)) * (1 + scale2) + shift2


class HTPlus(nn.Module):
    """HT+: (composite, mask) -> harmonized image, all in [0, 1], (B, 3, H, W)."""

    def __init__(self, cfg: ModelConfig, size: int) -> None:
        super().__init__()
        if size % cfg.patch:
            raise ValueError(f"image size {size} is not a multiple of the patch size {cfg.patch}")
        self.cfg, self.size, self.grid = cfg, size, size // cfg.patch
        self.patch_embed = nn.Linear(4 * cfg.patch * cfg.patch, cfg.dim)
        self.layers = nn.ModuleList(
            Layer(cfg.dim, cfg.heads, cfg.ffn, cfg.attention == "sdpa") for _ in range(cfg.depth)
        )
        self.head = nn.ConvTranspose2d(cfg.dim, 3, kernel_size=cfg.patch, stride=cfg.patch)
        self.register_buffer("pos", sine_encoding(self.grid, self.grid, cfg.dim,
                                                  normalize=cfg.positions == "normalized"), persistent=False)
        self.apply(_init_weights)
        if cfg.init == "authors":   # the packed in-projection keeps nn.MultiheadAttention's init
            for layer in self.layers:
                nn.init.xavier_uniform_(layer.attn.in_proj.weight)
                nn.init.zeros_(layer.attn.in_proj.bias)

    def modulations(self, batch: dict) -> list[tuple[torch.Tensor, ...]] | None:
        return None

    def forward(self, composite: torch.Tensor, mask: torch.Tensor, batch: dict | None = None) -> torch.Tensor:
        b, _, h, w = composite.shape
        if h != self.size or w != self.size:
            raise ValueError(f"the model was built for {self.size}x{self.size} inputs, got {h}x{w}")
        p, g = self.cfg.patch, self.grid
        x = torch.cat([composite if self.cfg.input_range == "unit" else composite * 2 - 1, mask], dim=1)
        tokens = x.reshape(b, 4, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, 4 * p * p)
        t = self.patch_embed(tokens)
        pos = self.pos.to(t.dtype)[None]
        mods = self.modulations(batch or {})
        for i, layer in enumerate(self.layers):
            t = layer(t, pos, None if mods is None else mods[i])
        t = t.transpose(1, 2).reshape(b, self.cfg.dim, g, g)
        out = torch.tanh(self.head(t))
        return out if self.cfg.output == "tanh" else (out + 1) / 2


class TextHTPlus(HTPlus):
    """HT+ conditioned on CLIP text embeddings by zero-initialised adaptive LayerNorm."""

    def __init__(self, cfg: ModelConfig, size: int, text_dim: int) -> None:
        super().__init__(cfg, size)
        self.text_keys = text_keys(cfg)
        self.text_dim = text_dim
        self.cond = nn.Sequential(nn.Linear(text_dim * len(self.text_keys), cfg.dim), nn.SiLU())
        nn.init.normal_(self.cond[0].weight, std=0.02)
        nn.init.zeros_(self.cond[0].bias)
        self.ada = nn.Linear(cfg.dim, cfg.depth * 6 * cfg.dim)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def modulations(self, batch: dict) -> list[tuple[torch.Tensor, ...]]:
        missing = [k for k in self.text_keys if batch.get(k) is None]
        if missing:
            raise ValueError(
                f"the text-guided model needs {', '.join(missing)} in every batch "
                "(build the dataset with captions on)"
            )
        c = torch.cat([batch[k] for k in self.text_keys], dim=-1).to(self.ada.weight.dtype)
        m = self.ada(self.cond(c)).reshape(c.shape[0], self.cfg.depth, 6, self.cfg.dim)
        return [tuple(m[:, i, j] for j in range(6)) for i in range(self.cfg.depth)]


def text_keys(cfg: ModelConfig) -> tuple[str, ...]:
    """The CLIP embedding columns a model of this config reads besides the pixels."""
    if cfg.kind == "ht" or (cfg.kind == "clipseg_ht" and cfg.text is None):
        return ()
    return ("clip_phrase", "clip_caption") if cfg.text == "phrase+caption" else ("clip_phrase",)


PHRASE_KEYS = ("phrase_ids", "phrase_attention")


def phrase_model(cfg: ModelConfig) -> str | None:
    """The CLIPSeg whose tokenizer turns each row's phrase into tokens (None: no phrases)."""
    return cfg.clipseg if cfg.kind == "clipseg_ht" else None


def batch_keys(cfg: ModelConfig) -> tuple[str, ...]:
    """Every batch entry the model reads besides composite and mask."""
    return text_keys(cfg) + (PHRASE_KEYS if cfg.kind == "clipseg_ht" else ())


class ClipSegHT(nn.Module):
    """HT+ harmonizing the region a phrase names: a frozen CLIPSeg finds it, the
    refinement head corrects it, HT+ takes it as its mask channel (``cfg.region`` picks
    the annotated mask, CLIPSeg's region or the refined one). Returns the image and the
    region logits the region loss grades (the head's; CLIPSeg's when there is no head).

    CLIPSeg is held outside the module tree: it is not trained, not in ``state_dict``
    (checkpoints record its identity instead) and not counted; it follows ``.to()``."""

    def __init__(self, cfg: ModelConfig, size: int, text_dim: int | None) -> None:
        super().__init__()
        from train.region import FrozenClipSeg, RegionHead

        self.cfg, self.text_keys = cfg, text_keys(cfg)
        self.ht = TextHTPlus(cfg, size, text_dim) if self.text_keys else HTPlus(cfg, size)
        self.text_dim = text_dim if self.text_keys else None
        self.head = RegionHead(cfg.head_width) if cfg.region != "clipseg" else None
        object.__setattr__(self, "clipseg", FrozenClipSeg(cfg.clipseg))

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.clipseg._apply(fn, recurse)
        return self

    def regions(self, composite: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(CLIPSeg's logits, the refined logits or None) at the composite's size."""
        seg = self.clipseg(composite, batch["phrase_ids"], batch["phrase_attention"])
        return seg, (self.head(composite, seg) if self.head is not None else None)

    def forward(self, composite: torch.Tensor, mask: torch.Tensor, batch: dict | None = None):
        batch = batch or {}
        seg, refined = self.regions(composite, batch)
        logits = refined if refined is not None else seg
        region = mask if self.cfg.region == "gt" else torch.sigmoid(logits)
        return self.ht(composite, region, batch), logits

    def harmonize(self, composite: torch.Tensor, region: torch.Tensor, batch: dict) -> torch.Tensor:
        """HT+ alone, with a given region (a mask a user drew)."""
        return self.ht(composite, region, batch)


def _init_weights(module: nn.Module) -> None:
    # HT: normal(0, 0.02) on every Linear and convolution, zero biases.
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_model(cfg: ModelConfig, size: int, text_dim: int | None = None) -> nn.Module:
    if cfg.kind == "ht":
        return HTPlus(cfg, size)
    if text_keys(cfg) and not text_dim:
        raise ValueError("the text-guided model needs the CLIP embedding width (text_dim)")
    if cfg.kind == "clipseg_ht":
        return ClipSegHT(cfg, size, text_dim)
    return TextHTPlus(cfg, size, text_dim)


def split_output(out) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(image, region logits or None) from any model's forward."""
    return out if isinstance(out, tuple) else (out, None)


def blend(output: torch.Tensor, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """HT's test-time output: the prediction inside the mask, the composite outside."""
    return composite * (1 - mask) + output * mask


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
