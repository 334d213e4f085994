"""The captions engine's model code on tiny random models built through the real
classes: the fused BLIP decoder against transformers' generate, token for token; the
seeded uniforms it samples with; the trimmed CLIP text tower against open_clip's."""

import logging

import numpy as np
import pytest
import torch

import tasks.core.torch_compat  # noqa: F401
from tasks.captions import decoder, engine

SETTINGS = [  # (images, k, beams, min_length, max_length, top_p)
    (6, 8, 3, 5, 20, 0.9),    # the defaults
    (5, 3, 2, 8, 12, 0.5),
    (4, 1, 1, 5, 20, 1.0),
    (7, 4, 4, 0, 16, 0.95),
]


@pytest.fixture(scope="module")
def blip(models):
    from transformers import BlipForConditionalGeneration

    return BlipForConditionalGeneration.from_pretrained(models["blip"], local_files_only=True).eval()


def _config(models):
    from schemas.config import load_config

    return load_config(None, [f"captions.blip_model={models['blip']}",
                              f"captions.clip_model={models['clip']}"])


def _tokens(seqs, cfg):
    """Token ids without padding and end tokens: what the captions are made of."""
    return [[t for t in row if t not in (cfg.pad_token_id, cfg.sep_token_id)] for row in seqs.tolist()]


def _both(blip, setting, seed):
    n, k, beams, min_length, max_length, top_p = setting
    cfg = blip.config.text_config
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        embeds = blip.vision_model(pixel_values=torch.randn(n, 3, 224, 224, generator=gen))[0]
    prompt = [cfg.bos_token_id, 6, 7, 8]
    ids = list(range(100, 100 + n))
    uniforms = torch.from_numpy(engine.sample_uniforms(seed, ids, k, max_length)).float()
    d = decoder.Decoding(k, beams, top_p, min_length, max_length, cfg.sep_token_id, cfg.pad_token_id)
    fused = decoder.decode(blip.text_decoder, embeds, prompt, uniforms, d)
    reference = engine._generate(blip.text_decoder, embeds, prompt, uniforms, d)
    return [_tokens(s, cfg) for s in fused], [_tokens(s, cfg) for s in reference]


@pytest.mark.parametrize("end_bias", [0.0, 1.0, 1.5, 4.0])
def test_fused_decoding_equals_generate_token_for_token(blip, end_bias):
    """Sharpened logits and a raised end-token score make sequences and beams end at
    varied lengths (random weights alone never end one), so the beam search's finishing,
    its stopping heuristic and the samples' padding are all exercised."""
    head = blip.text_decoder.cls.predictions.decoder
    end = blip.config.text_config.sep_token_id
    saved = (head.weight.detach().clone(), head.bias.detach().clone())
    lengths = set()
    try:
        with torch.no_grad():
            head.weight.mul_(6.0)
            head.bias[end] += end_bias
        for i, setting in enumerate(SETTINGS):
            (sampled, beam), (ref_sampled, ref_beam) = _both(blip, setting, seed=i)
            assert sampled == ref_sampled, setting
            assert beam == ref_beam, setting
            lengths |= {len(t) for t in sampled + beam}
    finally:
        with torch.no_grad():
            head.weight.copy_(saved[0])
            head.bias.copy_(saved[1])
    assert len(lengths) >= (1 if end_bias in (0.0, 4.0) else 4)


def test_a_generation_setting_the_fused_decoder_lacks_falls_back_to_generate(blip, models, caplog):
    cfg = _config(models)
    m = engine.load_models(models["blip"], models["clip"], "cpu", "bfloat16")
    assert decoder.unsupported(m.blip.text_decoder.generation_config) == []
    assert engine.use_fused(m, cfg.captions)
    assert not engine.use_fused(m, cfg.captions.model_copy(update={"decoder": "generate"}))
    gen_cfg = m.blip.text_decoder.generation_config
    gen_cfg.repetition_penalty = 1.3
    try:
        with caplog.at_level(logging.WARNING, "phraseharmony.captions"):
            assert not engine.use_fused(m, cfg.captions)
        assert "repetition_penalty=1.3" in caplog.text and "generate" in caplog.text
    finally:
        gen_cfg.repetition_penalty = 1.0


def test_caption_batch_is_the_same_through_either_decoder(models):
    cfg = _config(models)
    m = engine.load_models(models["blip"], models["clip"], "cpu", "bfloat16")
    pixels = torch.randn(3, 3, *m.blip_size, generator=torch.Generator().manual_seed(3))
    fused = engine.caption_batch(m, pixels, [11, 12, 13], cfg.captions, seed=5)
    by_generate = cfg.captions.model_copy(update={"decoder": "generate"})
    reference = engine.caption_batch(m, pixels, [11, 12, 13], by_generate, seed=5)
    assert fused == reference
    assert all(len(s) == cfg.captions.candidates and all(s) and b for s, b in fused)


def test_the_fused_vision_encoder_equals_blips(blip):
    from tasks.captions import vision

    pixels = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        reference = blip.vision_model(pixel_values=pixels)[0]
    assert torch.allclose(vision.encode(blip.vision_model, pixels), reference, atol=1e-5)


def test_uniforms_are_per_image_streams_in_the_unit_interval():
    u = engine.sample_uniforms(7, [1, 2, 3], 8, 20)
    assert u.shape == (24, 20) and u.dtype == np.float64
    assert (u >= 0).all() and (u < 1).all()
    # A photo's stream does not depend on the photos batched with it, nor on the order.
    assert np.array_equal(engine.sample_uniforms(7, [2], 8, 20), u[8:16])
    assert np.array_equal(engine.sample_uniforms(7, [3, 1], 8, 20)[8:], u[:8])
    # Longer streams extend shorter ones; another seed or image, other numbers.
    assert np.array_equal(engine.sample_uniforms(7, [1], 8, 30)[:, :20], u[:8])
    assert not np.isclose(engine.sample_uniforms(8, [1, 2, 3], 8, 20), u).any(axis=1).all()
    big = engine.sample_uniforms(0, list(range(2000)), 8, 20).ravel()
    assert abs(big.mean() - 0.5) < 0.005 and abs(big.var() - 1 / 12) < 0.002
    counts = np.histogram(big, bins=20, range=(0, 1))[0]
    assert counts.min() > 0.95 * big.size / 20


def test_the_trimmed_text_tower_equals_open_clips_encode_text(models):
    import open_clip

    model, _ = open_clip.create_model_from_pretrained(models["clip"])
    tokenizer = open_clip.get_tokenizer(models["clip"])
    texts = ["a man riding a horse", "dog", "", "a red bus parked near a tall building on a busy street"]
    tokens = tokenizer(texts)
    with torch.no_grad():
        full = model.encode_text(tokens, normalize=True)
        trimmed = engine.encode_text(model, tokens)
        assert engine.encode_text(model, tokens[:0]).shape == (0, full.shape[1])
    assert torch.allclose(trimmed, full, atol=1e-6)
    assert int((tokens != 0).sum(1).max()) < 20 < tokens.shape[1]   # the trim did shorten
