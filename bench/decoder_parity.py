"""How often the fused BLIP decoder picks the same captions as transformers' generate, on
this machine's device: a check to run where the tests cannot (a GPU), before trusting
a throughput number.

    .venv/bin/python bench/decoder_parity.py                  # this CPU: tiny BLIP, fp32
    python3 bench/decoder_parity.py --size full --images 64   # a GPU: BLIP-large, fp32 and bf16

Both decoders get the same image tokens and uniforms. In fp32 they must agree on every
caption (the tests hold this on the CPU); in bf16 the two compute the same sums in other
orders and kernels, so a sampled caption may fork where two tokens' probabilities are
within rounding (random weights make such near-ties common): agreement well under 100%
there is expected, a broken decoder agrees on almost nothing. Random weights never end a
sequence, so the end token's score is raised (``--end-bias``) for varied lengths.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("tiny", "full"), default="tiny")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--end-bias", type=float, default=1.0)
    ap.add_argument("--dtypes", nargs="+", choices=("float32", "bfloat16"),
                    help="default: both on a GPU, float32 on the CPU")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()

    import torch

    import tasks.core.torch_compat  # noqa: F401
    from model_fixtures import make_blip
    from tasks.captions import decoder, engine, vision

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from transformers import BlipForConditionalGeneration  # after tasks.core.torch_compat
    work = Path(tempfile.mkdtemp(prefix="ph-parity-"))
    folder = make_blip(work / "blip", "tiny" if a.size == "tiny" else "large")
    results = []
    dtypes = a.dtypes or (["float32", "bfloat16"] if device.type == "cuda" else ["float32"])
    for dtype in (getattr(torch, name) for name in dtypes):
        blip = BlipForConditionalGeneration.from_pretrained(folder, dtype=dtype).to(device).eval()
        cfg = blip.config.text_config
        with torch.no_grad():
            blip.text_decoder.cls.predictions.decoder.bias[cfg.sep_token_id] += a.end_bias
        side = blip.config.vision_config.image_size
        pixels = torch.randn(a.images, 3, side, side, generator=torch.Generator().manual_seed(0))
        pixels = pixels.to(device, dtype)
        d = decoder.Decoding(8, 3, 0.9, 5, 20, cfg.sep_token_id, cfg.pad_token_id)
        uniforms = torch.from_numpy(engine.sample_uniforms(0, list(range(a.images)), d.k, d.max_length))
        uniforms = uniforms.float().to(device)
        with torch.no_grad():
            ours = vision.encode(blip.vision_model, pixels)
            theirs = blip.vision_model(pixel_values=pixels)[0]
        prompt = [cfg.bos_token_id, 6, 7, 8]
        fused = decoder.decode(blip.text_decoder, theirs, prompt, uniforms, d)
        reference = engine._generate(blip.text_decoder, theirs, prompt, uniforms, d)

        def same(x, y):
            strip = [[[t for t in row if t not in (cfg.pad_token_id, cfg.sep_token_id)] for row in s.tolist()]
                     for s in (x, y)]
            return sum(p == q for p, q in zip(*strip)) / len(strip[0])
        res = {"device": device.type, "dtype": str(dtype).removeprefix("torch."), "size": a.size,
               "images": a.images, "vision_max_abs_diff": float((ours - theirs).abs().max()),
               "sampled_same": round(same(fused[0], reference[0]), 3),
               "beam_same": round(same(fused[1], reference[1]), 3)}
        results.append(res)
        print(json.dumps(res))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
