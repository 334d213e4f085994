"""Randomly initialised BLIP and open_clip models built through the real classes and saved
to folders the way a user's would be (``save_pretrained``; open_clip's local-dir layout).
``tiny`` for the tests; the benchmark builds the real architectures at full size."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import tasks.core.torch_compat  # noqa: F401

WORDS = ("a picture of the man woman dog cat red blue green white black small large "
         "on in with and near street table car tree sky grass water person sitting standing "
         "holding wearing shirt hat bus train plate food building window road field").split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]


def make_blip(folder: Path, size: str = "tiny", seed: int = 0) -> Path:
    """A BLIP captioner (model + processor) saved with save_pretrained."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    torch.manual_seed(seed)
    if size == "tiny":
        vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
        tok = BertTokenizer(vocab=vocab, bos_token="[DEC]")
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      image_size=224, patch_size=16)
        text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, encoder_hidden_size=32)
        image_size = 224
    else:  # BLIP-large's architecture (ViT-L/16 at 384, BERT-base decoder), random weights
        vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
        vocab.update({f"w{i}": len(vocab) + i for i in range(30524 - len(vocab))})
        tok = BertTokenizer(vocab=vocab, bos_token="[DEC]")
        vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                      num_attention_heads=16, image_size=384, patch_size=16)
        text = dict(vocab_size=len(tok), encoder_hidden_size=1024)
        image_size = 384
    text.update(bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
                sep_token_id=tok.sep_token_id, eos_token_id=tok.sep_token_id)
    # Full-size random weights are initialised on a GPU when there is one (seconds, not a minute).
    where = torch.device("cuda" if size != "tiny" and torch.cuda.is_available() else "cpu")
    with where:
        model = BlipForConditionalGeneration(BlipConfig(vision_config=vision, text_config=text))
    processor = BlipProcessor(BlipImageProcessor(size={"height": image_size, "width": image_size}), tok)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def make_clip(folder: Path, size: str = "tiny", seed: int = 0) -> str:
    """An open_clip model in the local-dir layout; returns its ``local-dir:`` spec."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    if size == "tiny":
        model_cfg = {"embed_dim": 32,
                     "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 16},
                     "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64,
                                  "heads": 2, "layers": 2}}
    else:
        model_cfg = open_clip.get_model_config(size)
    with torch.device("cuda" if size != "tiny" and torch.cuda.is_available() else "cpu"):
        model = open_clip.CLIP(**model_cfg)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": model_cfg,
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                           "std": [0.26862954, 0.26130258, 0.27577711]}}))
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()},
              folder / "open_clip_model.safetensors")
    return f"local-dir:{folder}"


def clip_tokenizer(folder: Path):
    """A CLIP BPE tokenizer for transformers, built from open_clip's bundled vocabulary
    (no hub): the same token ids as open_clip's tokenizer."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def make_clipseg(folder: Path, size: str = "tiny", seed: int = 0) -> Path:
    """CLIPSeg (model + processor) saved with save_pretrained: tiny, or CIDAS/clipseg-rd64-
    refined's architecture (CLIP ViT-B/16, reduce_dim 64) with random weights."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor

    torch.manual_seed(seed)
    if size == "tiny":
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      image_size=224, patch_size=16)
        config = CLIPSegConfig(text_config=text, vision_config=vision, projection_dim=32,
                               extract_layers=[0, 1], reduce_dim=16, decoder_num_attention_heads=2,
                               decoder_intermediate_size=32)
    else:
        config = CLIPSegConfig(text_config={}, vision_config={"patch_size": 16}, extract_layers=[3, 6, 9],
                               reduce_dim=64, use_complex_transposed_convolution=True)
    with torch.device("cuda" if size != "tiny" and torch.cuda.is_available() else "cpu"):
        model = CLIPSegForImageSegmentation(config)
    tok = clip_tokenizer(folder / "_bpe")
    images = ViTImageProcessor(do_resize=True, size={"height": 352, "width": 352}, resample=2,
                               image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    CLIPSegProcessor(image_processor=images, tokenizer=tok).save_pretrained(folder)
    for f in (folder / "_bpe").iterdir():
        f.unlink()
    (folder / "_bpe").rmdir()
    return folder
