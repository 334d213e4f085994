"""The models at work: BLIP candidates (seeded nucleus sampling + one beam caption) and
CLIP embeddings, on batches of preprocessed images.

BLIP runs as ``BlipForConditionalGeneration.generate`` would (vision encoder once per
image, then its text decoder over the image tokens), with one change: sampling draws
from per-image random streams (config seed + image id + candidate), so a caption does
not depend on which images share its batch or on the global RNG: top-p, then the token
whose CDF interval holds the stream's next uniform. The decoding itself is
``decoder.decode`` (both decodings in one pass, the image's cross-attention computed
once) after ``vision.encode`` (fused attention); ``captions.decoder: generate`` runs
transformers' vision model and generate instead, the reference they are tested against.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

import tasks.core.torch_compat  # noqa: F401  (before torchvision / open_clip / BLIP imports)
from tasks.captions import decoder, vision
from tasks.captions.models import BlipSource, ClipSource, resolve_blip, resolve_clip

log = logging.getLogger("phraseharmony.captions")


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def precision_of(device: torch.device, precision: str) -> torch.dtype:
    # Half precision on the GPU; fp32 on the CPU (no bf16 hardware here: bf16 is slower).
    return getattr(torch, precision) if device.type == "cuda" else torch.float32


@dataclass
class Models:
    blip: object
    blip_processor: object
    clip: object
    clip_preprocess: object
    clip_tokenizer: object
    device: torch.device
    dtype: torch.dtype
    blip_source: BlipSource
    clip_source: ClipSource
    embed_dim: int
    blip_size: tuple[int, int]            # (height, width) of BLIP's input
    blip_resample: int                    # PIL resample BLIP's processor uses
    blip_norm: tuple[tuple, tuple]        # mean, std
    clip_steps: object                    # open_clip's Resize + CenterCrop
    clip_norm: tuple[tuple, tuple]

    @property
    def precision_kind(self) -> str:
        """What besides the weights decides the numbers: device type and dtype."""
        return f"{self.device.type}:{str(self.dtype).removeprefix('torch.')}"


@lru_cache(maxsize=2)
def load_models(blip_spec: str, clip_spec: str, device_setting: str, precision: str) -> Models:
    """Both models on the device, eval mode; cached per process (a worker loads once)."""
    from transformers import BlipForConditionalGeneration, BlipProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    blip_source, clip_source = resolve_blip(blip_spec), resolve_clip(clip_spec)
    device = pick_device(device_setting)
    dtype = precision_of(device, precision)
    blip = BlipForConditionalGeneration.from_pretrained(blip_source.path, local_files_only=True, dtype=dtype)
    processor = BlipProcessor.from_pretrained(blip_source.path, local_files_only=True)
    clip, preprocess, tokenizer = _load_clip(clip_source)
    clip = clip.to(device=device, dtype=dtype).eval()
    embed_dim = int(clip.text_projection.shape[1]) if hasattr(clip, "text_projection") else None
    if embed_dim is None:
        with torch.no_grad():
            embed_dim = int(clip.encode_text(tokenizer(["a"]).to(device)).shape[-1])
    from tasks.captions.prefetch import clip_spatial

    ip = processor.image_processor
    clip_steps, clip_norm = clip_spatial(preprocess)
    return Models(blip.to(device).eval(), processor, clip, preprocess, tokenizer, device, dtype,
                  blip_source, clip_source, embed_dim, (ip.size.height, ip.size.width),
                  int(ip.resample), (tuple(ip.image_mean), tuple(ip.image_std)), clip_steps, clip_norm)


def to_pixels(models: Models, batch, norm) -> torch.Tensor:
    """uint8 (n, H, W, 3) -> normalised (n, 3, H, W) on the device, in the model's dtype:
    the processors' rescale (1/255) and normalise, done where the model runs."""
    x = torch.from_numpy(batch).to(models.device, non_blocking=True).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(norm[0], device=models.device).view(1, 3, 1, 1)
    std = torch.tensor(norm[1], device=models.device).view(1, 3, 1, 1)
    return ((x - mean) / std).to(models.dtype)


def _load_clip(source: ClipSource):
    import open_clip

    if source.weights is None:  # local-dir: (or a cached hf-hub snapshot)
        model, preprocess = open_clip.create_model_from_pretrained(source.name)
        return model, preprocess, open_clip.get_tokenizer(source.name)
    kwargs = {f"image_{k}": v for k, v in source.preprocess.items()}
    model, _, preprocess = open_clip.create_model_and_transforms(
        source.name, pretrained=str(source.weights), force_quick_gelu=source.quick_gelu,
        require_pretrained=True, **kwargs)
    return model, preprocess, open_clip.get_tokenizer(source.name)


class SeededNucleus:
    """A logits processor: top-p over each row's distribution, then the token whose CDF
    interval holds the row's next uniform; every other score becomes -inf, so greedy
    decoding takes exactly that token. ``uniforms``: (rows, steps) on the device."""

    def __init__(self, uniforms: torch.Tensor, top_p: float, prompt_len: int):
        self.uniforms, self.top_p, self.prompt_len = uniforms, top_p, prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = min(input_ids.shape[1] - self.prompt_len, self.uniforms.shape[1] - 1)
        token = decoder.nucleus_pick(scores, self.uniforms[:, step], self.top_p)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, token[:, None], 0.0)


_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def _splitmix(z: np.ndarray) -> np.ndarray:
    z = z + _MIX[0]
    z = (z ^ (z >> np.uint64(30))) * _MIX[1]
    z = (z ^ (z >> np.uint64(27))) * _MIX[2]
    return z ^ (z >> np.uint64(31))


def sample_uniforms(seed: int, image_ids: list[int], k: int, steps: int) -> np.ndarray:
    """(len(image_ids) * k, steps) uniforms in [0, 1): one stream per (seed, image,
    candidate), a counter hash (splitmix64) of the four numbers: the same on every
    machine, and a whole batch in microseconds (a numpy Generator per candidate cost
    0.4 ms a photo in the process that feeds the GPU)."""
    with np.errstate(over="ignore"):
        ids = np.asarray(image_ids, dtype=np.int64).astype(np.uint64)
        z = _splitmix(_splitmix(np.full(len(ids), seed & (2**64 - 1), np.uint64)) ^ ids)
        z = _splitmix(z[:, None] ^ np.arange(k, dtype=np.uint64)[None, :]).reshape(-1)
        z = _splitmix(z[:, None] ^ np.arange(steps, dtype=np.uint64)[None, :])
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def strip_prompt(text: str, prompt: str) -> str:
    text, head = text.strip(), prompt.strip()
    if head and text.lower().startswith(head.lower()):
        text = text[len(head):]
    return text.strip()


@torch.no_grad()
def caption_batch(models: Models, pixels: torch.Tensor, image_ids: list[int], cfg, seed: int
                  ) -> list[tuple[list[str], str]]:
    """Per image: (k sampled candidates, the beam caption), prompt stripped; a candidate
    that is empty after stripping is returned as "" (the caller drops and counts it)."""
    blip, tok = models.blip, models.blip_processor.tokenizer
    n, k = len(image_ids), cfg.candidates
    fused = use_fused(models, cfg)
    image_embeds = blip_image_tokens(models, pixels, fused)
    text_cfg = blip.config.text_config
    prompt = tok([cfg.prompt], return_tensors="pt").input_ids[0].tolist()
    prompt = [text_cfg.bos_token_id, *prompt[1:-1]]   # [DEC] for [CLS], no [SEP]: as BLIP's generate
    uniforms = torch.from_numpy(sample_uniforms(seed, image_ids, k, cfg.max_length)).float().to(models.device)
    settings = decoder.Decoding(k, cfg.num_beams, cfg.top_p, cfg.min_length, cfg.max_length,
                                text_cfg.sep_token_id, text_cfg.pad_token_id)
    if fused:
        sampled, beam = decoder.decode(blip.text_decoder, image_embeds, prompt, uniforms, settings)
    else:
        sampled, beam = _generate(blip.text_decoder, image_embeds, prompt, uniforms, settings)
    sampled_text = [strip_prompt(t, cfg.prompt) for t in tok.batch_decode(sampled, skip_special_tokens=True)]
    beam_text = [strip_prompt(t, cfg.prompt) for t in tok.batch_decode(beam, skip_special_tokens=True)]
    return [(sampled_text[i * k:(i + 1) * k], beam_text[i]) for i in range(n)]


def blip_image_tokens(models: Models, pixels: torch.Tensor, fused: bool) -> torch.Tensor:
    """What BLIP's text decoder attends to: its vision model's last hidden state."""
    if fused:
        return vision.encode(models.blip.vision_model, pixels)
    return models.blip.vision_model(pixel_values=pixels)[0]


def use_fused(models: Models, cfg) -> bool:
    """The fused decoder unless configured otherwise or the checkpoint's generation
    config asks for something it does not implement (then generate, with a warning)."""
    if cfg.decoder == "generate":
        return False
    unsupported = decoder.unsupported(models.blip.text_decoder.generation_config)
    if unsupported:
        _warn_once(f"BLIP {models.blip_source.spec}: its generation config sets {', '.join(unsupported)}; "
                   "decoding with transformers' generate instead of the fused decoder")
    return not unsupported


@lru_cache(maxsize=8)
def _warn_once(message: str) -> None:
    log.warning(message)


def _generate(text_decoder, image_embeds, prompt: list[int], uniforms, d: decoder.Decoding):
    """The same decodings through transformers' generate: the reference the fused decoder
    is tested against, and the fallback."""
    n = image_embeds.shape[0]
    ids = torch.tensor([prompt] * n, device=image_embeds.device)
    common = {"eos_token_id": d.eos, "pad_token_id": d.pad, "max_length": d.max_length,
              "min_length": d.min_length}

    def run(embeds, input_ids, **kwargs):
        mask = torch.ones(embeds.shape[:-1], dtype=torch.long, device=embeds.device)
        return text_decoder.generate(input_ids=input_ids, encoder_hidden_states=embeds,
                                     encoder_attention_mask=mask, **common, **kwargs)

    sampled = run(image_embeds.repeat_interleave(d.k, dim=0), ids.repeat_interleave(d.k, dim=0),
                  do_sample=False, num_beams=1,
                  logits_processor=[SeededNucleus(uniforms, d.top_p, len(prompt))])
    return sampled, run(image_embeds, ids, do_sample=False, num_beams=d.beams)


@torch.no_grad()
def embed_images(models: Models, pixels: torch.Tensor) -> torch.Tensor:
    out = models.clip.encode_image(pixels, normalize=True)
    return _finite(models, out.float())


@torch.no_grad()
def embed_texts(models: Models, texts: list[str], batch: int = 512) -> torch.Tensor:
    return embed_tokens(models, models.clip_tokenizer(texts) if texts else None, batch)


@torch.no_grad()
def embed_tokens(models: Models, tokens: torch.Tensor | None, batch: int = 512) -> torch.Tensor:
    """Unit CLIP text embeddings (float32) of tokenised texts (rows of ``tokens``)."""
    parts = [] if tokens is None else [encode_text(models.clip, tokens[i:i + batch].to(models.device)).float()
                                       for i in range(0, tokens.shape[0], batch)]
    out = torch.cat(parts) if parts else torch.empty(0, models.embed_dim, device=models.device)
    return _finite(models, out)


def encode_text(clip, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's ``encode_text``, over the first positions only: up to the longest
    text's end token. With its causal mask and end-token pooling, the positions after a
    text's end cannot change its embedding, and captions end by token ~20 of 77 (about a
    quarter of the full work). Other text towers run as open_clip runs them."""
    import open_clip

    pool = getattr(clip, "text_pool_type", None)
    if type(clip) is not open_clip.CLIP or clip.attn_mask is None or pool not in ("argmax", "eos"):
        return clip.encode_text(tokens, normalize=True)
    ends = tokens.argmax(dim=-1) if pool == "argmax" else (tokens == clip.text_eos_id).int().argmax(dim=-1)
    length = int(ends.max()) + 1 if tokens.shape[0] else 1
    tokens = tokens[:, :length]
    dtype = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(tokens).to(dtype) + clip.positional_embedding[:length].to(dtype)
    x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask[:length, :length]))
    x = open_clip.transformer.text_global_pool(x, tokens, pool, eos_token_id=clip.text_eos_id)
    proj = clip.text_projection
    x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return torch.nn.functional.normalize(x, dim=-1)


def _finite(models: Models, emb: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(emb).all():
        raise FloatingPointError(f"CLIP model {models.clip_source.spec} produced non-finite "
                                 f"embeddings on {models.precision_kind}")
    # Re-normalised in float32: the stored float16 vectors then have norm 1 within 1e-3.
    return torch.nn.functional.normalize(emb, dim=-1)
