"""Stage: captions and CLIP embeddings, per image and per phrase, one part per shard.

Per part: images are decoded and preprocessed in spawned worker processes (OpenCV,
EXIF ignored, then BLIP's and CLIP's own preprocessing) while the models run batches;
BLIP gives k sampled candidates and a beam caption per image (image encoded once),
CLIP embeds the photo and every candidate (tokenised by the workers while the next
batch is captioned) and the best cosine wins; every phrase of
the part gets its CLIP text embedding. A CUDA out-of-memory error halves the batch and
goes on. Parts whose markers are current are not touched; a changed CLIP re-ranks from
the stored candidates without BLIP.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Callable

import pyarrow as pa
import torch

import tasks.core.torch_compat  # noqa: F401
from tasks.captions import engine, prefetch
from tasks.captions.models import resolve_blip, resolve_clip
from tasks.captions.store import (
    CAPTION_SCHEMA,
    CAPTIONS_DIR,
    PHRASE_SCHEMA,
    PHRASES_DIR,
    current_marker,
    digest,
    part_path,
    read_part,
    write_part,
)
from tasks.core.shard_plan import image_token

log = logging.getLogger("phraseharmony.captions")
Progress = Callable[[int], None]


def device_kind(cfg) -> str:
    device = engine.pick_device(cfg.captions.device)
    return f"{device.type}:{str(engine.precision_of(device, cfg.captions.precision)).removeprefix('torch.')}"


def model_identity(cfg) -> tuple[str, str, str]:
    """(BLIP identity, CLIP identity, device kind): resolved once per run."""
    c = cfg.captions
    return resolve_blip(c.blip_model).identity, resolve_clip(c.clip_model).identity, device_kind(cfg)


def part_digests(cfg, ident, image_ids, ledger, phrases: list[tuple[str, str]]) -> dict[str, str]:
    """What each output of a part is made from (see ``store``)."""
    c = cfg.captions
    blip_id, clip_id, kind = ident
    blip = digest("blip", blip_id, c.candidates, c.top_p, c.num_beams, c.min_length, c.max_length,
                  c.prompt, c.decoder, cfg.seed, kind, [(i, image_token(ledger.get(i))) for i in image_ids])
    return {"blip": blip, "clip": digest("clip", blip, clip_id, kind),
            "phrases": digest("phrases", clip_id, kind, sorted(phrases))}


def rank(image_emb: torch.Tensor, candidates: list[list[str]], text_emb: torch.Tensor):
    """Per image, its candidates as (text, cosine with the photo, index into the flat text
    embeddings ``text_emb``), best first (ties: generation order)."""
    owner = torch.tensor([i for i, texts in enumerate(candidates) for _ in texts], dtype=torch.long,
                         device=text_emb.device)
    # Every cosine in one pass and one copy to the host (not a device sync per photo).
    scores = (text_emb * image_emb[owner]).sum(dim=-1).tolist() if len(owner) else []
    out, start = [], 0
    for texts in candidates:
        order = sorted(range(len(texts)), key=lambda j: (-scores[start + j], j))
        out.append([(texts[j], scores[start + j], start + j) for j in order])
        start += len(texts)
    return out


def _candidates(sampled: list[str], beam: str, skips: Counter) -> list[str]:
    """Non-empty, unique candidates (sampled first, then the beam caption)."""
    seen, out = set(), []
    for text in [*sampled, beam]:
        if not text:
            skips["empty_candidate"] += 1
        elif text not in seen:
            seen.add(text)
            out.append(text)
    return out


def _with_oom_halving(fn, ids, *tensors):
    """fn(ids, *tensors) -> list; on CUDA out-of-memory, the two halves one after the other."""
    try:
        return fn(ids, *tensors)
    except torch.cuda.OutOfMemoryError:
        if len(ids) <= 1:
            raise
        torch.cuda.empty_cache()
        half = len(ids) // 2
        log.warning("CUDA out of memory on a batch of %d images: going on with %d and %d",
                    len(ids), half, len(ids) - half)
        return (_with_oom_halving(fn, ids[:half], *(t[:half] if t is not None else None for t in tensors))
                + _with_oom_halving(fn, ids[half:], *(t[half:] if t is not None else None for t in tensors)))


def caption_images(cfg, models, image_ids, stored: dict[int, tuple[list[str], str]] | None,
                   progress: Progress | None = None) -> tuple[pa.Table, Counter]:
    """The captions table for ``image_ids``. ``stored``: image id -> (candidates, beam)
    from a part whose BLIP digest still holds (then only CLIP runs)."""
    skips: Counter = Counter()
    rows: list[dict[str, Any]] = []
    c = cfg.captions

    def candidates(ids, blip_px, clip_px):
        """Per image: (candidates, beam caption, CLIP image embedding)."""
        if stored is None:
            generated = engine.caption_batch(models, blip_px, ids, c, cfg.seed)
            cands = [(_candidates(s, b, skips), b) for s, b in generated]
        else:
            cands = [stored[i] for i in ids]
        image_emb = engine.embed_images(models, clip_px)
        return [(*cand, emb) for cand, emb in zip(cands, image_emb)]

    def finish(ids, made, tokens):
        """Rank a batch's candidates with their CLIP text embeddings; its rows."""
        cands = [m[0] for m in made]
        image_emb = torch.stack([m[2] for m in made])
        text_emb = engine.embed_tokens(models, tokens.get())
        ranked = rank(image_emb, cands, text_emb)
        image_emb, text_emb = image_emb.half().cpu(), text_emb.half().cpu()   # one copy each
        for i, image_id in enumerate(ids):
            if not ranked[i]:
                skips["no_candidate"] += 1
                continue
            best, score, at = ranked[i][0]
            rows.append({"image_id": image_id, "caption": best,
                         "caption_candidates": [{"text": t, "clip_score": s} for t, s, _ in ranked[i]],
                         "caption_clip_score": score, "beam_caption": made[i][1],
                         "candidates_generated": made[i][0],
                         "clip_image": image_emb[i].tolist(), "clip_caption": text_emb[at].tolist()})

    # A batch's candidates are tokenised for CLIP in the worker processes while the
    # models caption the next batch; its rows are made after that (one batch behind).
    pending = None
    done = 0
    blip_size = models.blip_size if stored is None else None
    for ids, blip_u8, clip_u8, failed in prefetch.batches(cfg.images_dir, list(image_ids), c.batch_size,
                                                           c.workers, blip_size, models.blip_resample,
                                                           models.clip_steps):
        for _ in failed:
            skips["image_unreadable"] += 1
        if ids:
            blip_px = engine.to_pixels(models, blip_u8, models.blip_norm) if blip_u8 is not None else None
            clip_px = engine.to_pixels(models, clip_u8, models.clip_norm)
            made = _with_oom_halving(candidates, ids, blip_px, clip_px)
            texts = [t for m in made for t in m[0]]
            if pending:
                finish(*pending)
            pending = (ids, made, prefetch.Tokens(models.clip_source.name, texts, c.workers))
        done += len(ids) + len(failed)
        if progress:
            progress(done)
    if pending:
        finish(*pending)
    rows.sort(key=lambda r: r["image_id"])
    return pa.Table.from_pylist(rows, schema=CAPTION_SCHEMA), skips


def embed_phrases(models, phrases: list[tuple[str, str]]) -> pa.Table:
    phrases = sorted(phrases)
    emb = engine.embed_texts(models, [p for _, p in phrases]).half().tolist()
    return pa.Table.from_pylist([{"task_id": t, "clip_phrase": e} for (t, _), e in zip(phrases, emb)],
                                schema=PHRASE_SCHEMA)


def current_parts(cfg, ident, split: str, index: int, image_ids, ledger,
                  phrases: list[tuple[str, str]]) -> tuple[dict, dict | None, dict | None]:
    """(digests, captions marker, phrases marker): a marker is None unless its part is
    whole and its digests are the current ones."""
    digests = part_digests(cfg, ident, image_ids, ledger, phrases)
    cap = current_marker(cfg.out_dir, CAPTIONS_DIR, split, index)
    phr = current_marker(cfg.out_dir, PHRASES_DIR, split, index)
    if cap is not None and cap["digests"] != {k: digests[k] for k in ("blip", "clip")}:
        cap = dict(cap, stale=True)
    if phr is not None and phr["digests"] != {"phrases": digests["phrases"]}:
        phr = None
    return digests, cap, phr


def caption_part(cfg, split: str, index: int, image_ids, ledger, phrases: list[tuple[str, str]],
                 may_publish=lambda: True, progress: Progress | None = None, ident=None) -> dict[str, Any]:
    """Bring one part's captions and phrase embeddings up to date. Returns what was done
    (captions: current | reranked | captioned; phrases: current | embedded) and the
    two markers."""
    out, c = cfg.out_dir, cfg.captions
    digests, cap, phr = current_parts(cfg, ident or model_identity(cfg), split, index, image_ids,
                                      ledger, phrases)
    done = {"captions": "current", "phrases": "current"}
    usable = [i for i in image_ids if (ledger.get(i) or {}).get("status") == "ok"]
    not_ok = Counter(f"image_{(ledger.get(i) or {}).get('status', 'pending')}" for i in image_ids
                     if i not in set(usable))
    need_caps = cap is None or cap.get("stale", False)
    need_phr = phr is None
    if need_caps or need_phr:
        models = engine.load_models(c.blip_model, c.clip_model, c.device, c.precision)
        meta = {"blip_model": models.blip_source.identity, "clip_model": models.clip_source.identity,
                "clip_dim": str(models.embed_dim), "device": models.precision_kind,
                "decoding": _decoding(cfg)}
    if need_caps:
        stored = None
        if cap is not None and cap["digests"].get("blip") == digests["blip"]:
            stored = _stored_candidates(part_path(out, CAPTIONS_DIR, split, index))
        done["captions"] = "reranked" if stored is not None else "captioned"
        table, skips = caption_images(cfg, models, usable, stored, progress)
        skips.update(not_ok)
        cap = write_part(out, CAPTIONS_DIR, split, index, table, meta,
                         {"blip": digests["blip"], "clip": digests["clip"]},
                         dict(sorted(skips.items())), may_publish)
    if need_phr:
        phr = write_part(out, PHRASES_DIR, split, index, embed_phrases(models, phrases), meta,
                         {"phrases": digests["phrases"]}, {}, may_publish)
        done["phrases"] = "embedded"
    return {**done, "captions_marker": cap, "phrases_marker": phr}


def _stored_candidates(path) -> dict[int, tuple[list[str], str]] | None:
    table = read_part(path, ["image_id", "candidates_generated", "beam_caption"])
    if table is None:
        return None
    return {r["image_id"]: (r["candidates_generated"], r["beam_caption"]) for r in table.to_pylist()}


def _decoding(cfg) -> str:
    c = cfg.captions
    return (f"k={c.candidates} top_p={c.top_p} beams={c.num_beams} min_length={c.min_length} "
            f"max_length={c.max_length} prompt={c.prompt!r} decoder={c.decoder} seed={cfg.seed}")
