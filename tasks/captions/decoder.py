"""BLIP's text decoder, driven for captions: per image, k seeded nucleus samples and one
beam search, in a single decoding pass.

transformers' ``generate`` runs the two decodings one after the other and copies each
image's tokens into every sequence's cross-attention cache (21 MB a sequence for
BLIP-large: 97 GiB at 512 photos x 11 sequences), then attends over each copy, step
after step; between the kernels it spends milliseconds in Python per step. Here the
image's cross-attention keys and values are computed once per image and every one of
its k + beams sequences attends to them (the queries of one image are one batch row of
the attention), the self-attention cache is preallocated, and both decodings advance
in the same forward pass. The arithmetic is the BLIP text decoder's own (its modules'
weights, its layer order, SDPA with its 1/sqrt(d) scale); the token choices are
``generate``'s: the seeded inverse-CDF top-p draw of ``engine.SeededNucleus``, greedy
after it, and transformers' vectorised beam search with its defaults (length penalty 1,
``early_stopping=False`` and its stopping heuristic), which the tests check token for
token against ``generate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Generation settings the fused decoder implements only at these values; a model whose
# generation config sets another falls back to transformers' generate (see ``unsupported``).
_DEFAULTS = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "bad_words_ids": None,
             "forced_bos_token_id": None, "forced_eos_token_id": None, "suppress_tokens": None,
             "begin_suppress_tokens": None, "length_penalty": 1.0, "early_stopping": False,
             "min_new_tokens": None, "exponential_decay_length_penalty": None, "sequence_bias": None,
             "renormalize_logits": False, "encoder_repetition_penalty": 1.0, "diversity_penalty": 0.0,
             "encoder_no_repeat_ngram_size": 0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}
NEG = -1.0e9   # transformers' beam search marks unusable hypotheses with this score


@dataclass(frozen=True)
class Decoding:
    k: int                  # sampled candidates per image
    beams: int
    top_p: float
    min_length: int         # counts the prompt, like generate's min_length
    max_length: int
    eos: int
    pad: int


def unsupported(generation_config) -> list[str]:
    """The generation settings of a BLIP checkpoint that the fused decoder does not
    implement (empty: it decodes exactly as ``generate`` would)."""
    out = []
    for key, default in _DEFAULTS.items():
        value = getattr(generation_config, key, default)
        if value not in (default, None) and not (default is None and not value):
            out.append(f"{key}={value!r}")
    return out


def nucleus_pick(scores: torch.Tensor, uniforms: torch.Tensor, top_p: float) -> torch.Tensor:
    """Per row: top-p over softmax(scores), then the token whose CDF interval holds the
    row's uniform. Both decoders draw with it (``engine.SeededNucleus`` for generate)."""
    probs = torch.softmax(scores.float(), dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True)
    before = sorted_p.cumsum(dim=-1) - sorted_p
    kept = torch.where(before < top_p, sorted_p, torch.zeros_like(sorted_p))
    cdf = kept.cumsum(dim=-1)
    pick = torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(1)).clamp_(max=cdf.shape[1] - 1)
    return order.gather(1, pick).squeeze(1)


class _Net:
    """The decoder's forward for one new token per sequence, against preallocated caches.
    Sequences are ``images x per_image`` rows, image-major."""

    def __init__(self, text_decoder, image_embeds: torch.Tensor, per_image: int, max_length: int):
        self.bert, self.head = text_decoder.bert, text_decoder.cls
        cfg = text_decoder.config
        self.heads, self.dim = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
        self.n, self.r = image_embeds.shape[0], per_image
        rows, dtype, device = self.n * per_image, image_embeds.dtype, image_embeds.device
        layers = self.bert.encoder.layer
        shape = (rows, self.heads, max_length, self.dim)
        self.self_k = [torch.empty(shape, dtype=dtype, device=device) for _ in layers]
        self.self_v = [torch.empty(shape, dtype=dtype, device=device) for _ in layers]
        # Once per image, shared by all its sequences: (images, heads, image tokens, dim).
        self.cross = [(self._split(a.key(image_embeds)), self._split(a.value(image_embeds)))
                      for a in (layer.crossattention.self for layer in layers)]

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.heads, self.dim).transpose(-3, -2)

    def step(self, tokens: torch.Tensor, pos: int, rows_per_image: int | None = None) -> torch.Tensor:
        """Logits (rows, vocab) for ``tokens`` (rows,) at position ``pos``."""
        r = rows_per_image or self.r
        rows = tokens.shape[0]
        emb = self.bert.embeddings
        x = emb.LayerNorm(emb.word_embeddings(tokens) + emb.position_embeddings.weight[pos])
        for li, layer in enumerate(self.bert.encoder.layer):
            a = layer.attention.self
            q = a.query(x).view(rows, self.heads, 1, self.dim)
            self.self_k[li][:rows, :, pos] = a.key(x).view(rows, self.heads, self.dim)
            self.self_v[li][:rows, :, pos] = a.value(x).view(rows, self.heads, self.dim)
            ctx = F.scaled_dot_product_attention(q, self.self_k[li][:rows, :, :pos + 1],
                                                 self.self_v[li][:rows, :, :pos + 1])
            x = layer.attention.output(ctx.reshape(rows, -1), x)
            c = layer.crossattention.self
            q = c.query(x).view(self.n, r, self.heads, self.dim).transpose(1, 2)
            ctx = F.scaled_dot_product_attention(q, *self.cross[li])      # (images, heads, r, dim)
            x = layer.crossattention.output(ctx.transpose(1, 2).reshape(rows, -1), x)
            x = layer.output(layer.intermediate(x), x)
        return self.head(x).float()

    def spread(self) -> None:
        """Copy the prompt's cache rows (one per image, at the front) to all rows."""
        for cache in (*self.self_k, *self.self_v):
            cache.copy_(cache[:self.n].repeat_interleave(self.r, dim=0))

    def reorder(self, dst: torch.Tensor, src: torch.Tensor, upto: int) -> None:
        for cache in (*self.self_k, *self.self_v):
            cache[dst, :, :upto] = cache[src, :, :upto]


@torch.no_grad()
def decode(text_decoder, image_embeds: torch.Tensor, prompt: list[int], uniforms: torch.Tensor,
           d: Decoding) -> tuple[torch.Tensor, torch.Tensor]:
    """(sampled (images * k, length), beam (images, length)) token ids, prompt first and
    padded after the end token, as ``generate`` returns them."""
    n, k, nb, plen = image_embeds.shape[0], d.k, d.beams, len(prompt)
    r, device = k + nb, image_embeds.device
    net = _Net(text_decoder, image_embeds, r, d.max_length)
    # The prompt is the same for every sequence of an image: run it once per image.
    tokens = torch.tensor(prompt, device=device)
    for pos in range(plen):
        logits = net.step(tokens[pos].expand(n), pos, rows_per_image=1)
    net.spread()
    logits = logits.repeat_interleave(r, dim=0)
    cols = torch.arange(n * r, device=device).view(n, r)
    s_rows, b_rows = cols[:, :k].reshape(-1), cols[:, k:].reshape(-1)

    fill = d.pad if d.pad else d.eos   # what generate's beam search pads with
    sampled = torch.full((n * k, d.max_length), d.pad, dtype=torch.long, device=device)
    sampled[:, :plen] = tokens
    unfinished = torch.ones(n * k, dtype=torch.bool, device=device)
    beam = _Beams(n, nb, d, tokens, fill)
    cur = plen
    while True:
        scores = logits[s_rows]
        if cur < d.min_length:
            scores[:, d.eos] = float("-inf")
        pick = nucleus_pick(scores, uniforms[:, min(cur - plen, uniforms.shape[1] - 1)], d.top_p)
        pick = torch.where(unfinished, pick, torch.full_like(pick, d.pad))
        sampled[:, cur] = pick
        unfinished &= pick != d.eos
        src, beam_tokens, beams_over = beam.advance(logits[b_rows], cur)
        cur += 1
        # One wait for the device per step: both decodings are done, or max_length.
        if cur >= d.max_length or bool(beams_over & ~unfinished.any()):
            break
        net.reorder(b_rows, (src // nb) * r + k + src % nb, cur - 1)
        step_tokens = torch.empty(n * r, dtype=torch.long, device=device)
        step_tokens[s_rows], step_tokens[b_rows] = pick, beam_tokens
        logits = net.step(step_tokens, cur - 1)
    return sampled[:, :cur], beam.best()[:, :cur]


class _Beams:
    """transformers' vectorised beam search (``GenerationMixin._beam_search``) for one
    end token, length penalty 1 and ``early_stopping=False``, step by step."""

    def __init__(self, n: int, nb: int, d: Decoding, prompt: torch.Tensor, fill: int):
        device = prompt.device
        self.n, self.nb, self.d, self.plen = n, nb, d, prompt.shape[0]
        self.keep = 2 * nb   # max(2, 1 + end tokens) * beams
        self.running = torch.full((n, nb, d.max_length), fill, dtype=torch.long, device=device)
        self.running[:, :, :self.plen] = prompt
        self.finished = self.running.clone()
        self.running_scores = torch.zeros(n, nb, device=device)
        self.running_scores[:, 1:] = NEG
        self.scores = torch.full((n, nb), NEG, device=device)
        self.is_finished = torch.zeros(n, nb, dtype=torch.bool, device=device)
        self.open = torch.ones(n, 1, dtype=torch.bool, device=device)   # may still improve
        self.top = torch.arange(self.keep, device=device) < nb

    def advance(self, logits: torch.Tensor, cur: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: (source beam of each new running beam, as image * beams + beam;
        the new running beams' last tokens; whether the search is over, on the device)."""
        n, nb, d = self.n, self.nb, self.d
        logp = F.log_softmax(logits, dim=-1)
        if cur < d.min_length:
            logp[:, d.eos] = float("-inf")
        vocab = logp.shape[-1]
        logp = (logp.view(n, nb, vocab) + self.running_scores[:, :, None]).view(n, -1)
        top_logp, top_idx = torch.topk(logp, self.keep)
        from_beam, top_ids = top_idx // vocab, top_idx % vocab
        top_seqs = self.running.gather(1, from_beam[:, :, None].expand(-1, -1, d.max_length)).clone()
        top_seqs[:, :, cur] = top_ids
        hits = (top_ids == d.eos) | (cur + 1 >= d.max_length)

        run_logp = top_logp + hits.float() * NEG
        nxt = torch.topk(run_logp, nb)[1]
        self.running = top_seqs.gather(1, nxt[:, :, None].expand(-1, -1, d.max_length))
        self.running_scores = run_logp.gather(1, nxt)
        src = from_beam.gather(1, nxt) + torch.arange(n, device=logits.device)[:, None] * nb

        just = hits & self.top[None, :]
        done_logp = top_logp / (cur + 1 - self.plen)
        done_logp = done_logp + (~self.open).float() * NEG + (~just).float() * NEG
        seqs = torch.cat((self.finished, top_seqs), dim=1)
        scores = torch.cat((self.scores, done_logp), dim=1)
        fin = torch.cat((self.is_finished, just), dim=1)
        best = torch.topk(scores, nb)[1]
        self.finished = seqs.gather(1, best[:, :, None].expand(-1, -1, d.max_length))
        self.scores, self.is_finished = scores.gather(1, best), fin.gather(1, best)

        worst = torch.where(self.is_finished, self.scores.min(dim=1, keepdim=True)[0], NEG)
        possible = self.running_scores[:, :1] / (cur + 1 - self.plen)
        self.open = self.open & (possible > worst).any(dim=-1, keepdim=True)
        over = ~self.open.any() | hits.all()
        return src.view(-1), self.running[:, :, cur].reshape(-1), over

    def best(self) -> torch.Tensor:
        return self.finished[:, 0]
