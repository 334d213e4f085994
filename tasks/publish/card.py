"""Stage: the dataset card (``README.md``) and the preview grid (``preview.png``)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from PIL import Image, ImageDraw, ImageFont

from schemas.config import RunConfig
from schemas.shard import FIELDS
from tasks.core.files import write_bytes_atomic
from tasks.publish.card_text import CITATION, RECIPES, SAMPLE_SOURCE, VGPHRASECUT_SOURCE, describe
from tasks.synthesize.realism import REASONS

CARD_NAME = "README.md"
PREVIEW_NAME = "preview.png"
# iHarmony4 test set, input composites vs real images (ANCHORS.md): the range ours should sit in.
IHARMONY4_INPUT = {"mse": 172.47, "fmse": 1387.30, "psnr": 31.63}
FG_BINS = ((0.0, 0.05, "0-5%"), (0.05, 0.15, "5-15%"), (0.15, 1.0001, "15-100%"))
STAT_COLUMNS = ["split", "recipe", "fg_ratio", "mse", "fmse", "psnr", "delta_e"]
JUDGED = "judged:"   # notes key prefix: draws the realism judge saw, per recipe
# What the quality filter says of a draw: the judge's reasons and the ceiling.
JUDGE_REASONS = (*REASONS, "fg_change_above_max")


def read_stat_columns(out_dir: Path, manifest: dict[str, Any]) -> pa.Table:
    """Only the small numeric columns of every shard (never the pixels)."""
    tables = [pq.read_table(out_dir / s["path"], columns=STAT_COLUMNS) for s in manifest["shards"]]
    return pa.concat_tables(tables) if tables else pa.table({c: [] for c in STAT_COLUMNS})


def _metric_row(label: str, t: dict[str, np.ndarray], sel: np.ndarray) -> str:
    n = int(sel.sum())
    if n == 0:
        return f"| {label} | 0 | – | – | – | – | – | – |"
    fm = t["fmse"][sel]
    return (f"| {label} | {n} | {t['mse'][sel].mean():.2f} | {fm.mean():.2f} | "
            f"{fm.mean() / IHARMONY4_INPUT['fmse']:.2f}x | {(fm < 100).mean():.1%} | "
            f"{t['psnr'][sel].mean():.2f} | {t['delta_e'][sel].mean():.2f} |")


def render_card(cfg: RunConfig, manifest: dict[str, Any], stats: pa.Table,
                out_dir: Path | None = None) -> str:
    t = {c: stats.column(c).to_numpy(zero_copy_only=False) for c in STAT_COLUMNS}
    splits = sorted(manifest["splits"])
    front = {"configs": [{"config_name": "default", "data_files": [
        {"split": s, "path": f"data/{s}/*.parquet"} for s in splits]}]}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# PhraseHarmony dataset: `{manifest['name']}`", "",
             "Text-guided image-harmonization triples (target, composite, mask, phrase) "
             "synthesized by PhraseHarmony: in each row one region of a photo, named by a "
             "human referring phrase, has had its colours changed; a harmonization model "
             "learns to undo that change.", "",
             f"- rows: **{manifest['totals']['rows']}** in {manifest['totals']['shards']} "
             f"shards ({manifest['totals']['bytes'] / 2**20:.1f} MiB), paths below are "
             "relative to this folder",
             f"- schema v{manifest['schema_version']}, config `{manifest['config_hash']}`, "
             f"code `{manifest['code_version']}`, LUT library `{manifest['lut_library_version']}`",
             "", "![preview: composite | target | what changed](preview.png)", "",
             "## Source and licence", "",
             SAMPLE_SOURCE if cfg.images.source == "sample" else VGPHRASECUT_SOURCE, "",
             "## Counts by split", "", "| split | images | phrases | rows | shards |",
             "|---|---|---|---|---|"]
    for s in splits:
        v = manifest["splits"][s]
        lines.append(f"| {s} | {v['images']} | {v['tasks']} | {v['rows']} | {v['shards']} |")
    lines += _recipe_section(cfg, manifest, t, splits)
    lines += _metrics_section(t)
    lines += _judge_section(manifest, t)
    lines += ["", "## Foreground ratio", "", "| foreground share | rows |", "|---|---|"]
    edges = np.linspace(0.0, 1.0, 11)
    hist, _ = np.histogram(t["fg_ratio"], bins=edges)
    for i, n in enumerate(hist):
        lines.append(f"| {edges[i]:.0%}–{edges[i + 1]:.0%} | {int(n)} |")
    lines += _captions_section(out_dir, manifest)
    lines += _yield_section(cfg, manifest)
    lines += _skips_section(manifest)
    lines += _columns_section()
    lines += ["", "## Loading", "", "```python",
              "import io, numpy as np, pyarrow.parquet as pq",
              "from PIL import Image",
              "row = pq.read_table('data/train/part-00000.parquet').slice(0, 1).to_pylist()[0]",
              "composite = np.asarray(Image.open(io.BytesIO(row['composite'])))  # H x W x 3 uint8",
              "target = np.asarray(Image.open(io.BytesIO(row['target'])))",
              "mask = np.asarray(Image.open(io.BytesIO(row['mask'])), dtype=bool)  # H x W",
              "# or: datasets.load_dataset('parquet', data_files={'train': 'data/train/*.parquet'})",
              "```", "", "## Citation", "", CITATION, "",
              "## Config", "",
              "What decides the bytes (the config hash covers exactly this; paths, worker "
              "counts and download settings are left out):", "", "```yaml",
              yaml.safe_dump(cfg.output_relevant(), sort_keys=False).strip(), "```", ""]
    return "\n".join(lines)


def _recipe_section(cfg: RunConfig, manifest: dict[str, Any], t: dict[str, np.ndarray],
                    splits: list[str]) -> list[str]:
    recipes = sorted(set(t["recipe"].tolist()) | set(cfg.synthesis.recipes))
    weights = cfg.synthesis.recipes
    total_w = sum(weights.values()) or 1.0
    n = max(len(t["recipe"]), 1)
    lines = ["", "## Recipes", ""]
    lines += [f"- `{r}`: {RECIPES[r]}" for r in recipes if r in RECIPES]
    lines += ["", "| recipe | configured | built | " + " | ".join(splits) + " |",
              "|---|---|---|" + "---|" * len(splits)]
    for r in recipes:
        cells = [str(int(((t["recipe"] == r) & (t["split"] == s)).sum())) for s in splits]
        share = (t["recipe"] == r).sum() / n
        lines.append(f"| {r} | {weights.get(r, 0) / total_w:.0%} | {share:.0%} | " + " | ".join(cells) + " |")
    fallback = sum(v for k, v in manifest["notes"].items() if k.endswith(":no_same_category_reference"))
    if fallback:
        lines += ["", f"Why the mix differs from the configured weights: {fallback} draws of a "
                  "colour-transfer recipe found no object of the same category in another photo "
                  "of the same split (DoveNet's rule for references), so a LUT recipe was drawn "
                  "for them instead. Small or rare categories make this common; the full "
                  "VGPhraseCut has many objects per category."]
    return lines


def _metrics_section(t: dict[str, np.ndarray]) -> list[str]:
    lines = ["", "## Composite vs target", "",
             "Per-image MSE, fMSE, PSNR on 0-255 values at the stored size (the "
             "harmonization papers' definitions, binary mask, peak 255), averaged over rows; "
             "ΔE is mean CIEDE2000 over the foreground. Computed on the arrays before JPEG "
             "encoding. Difficulty is read against iHarmony4's input composites (last row): "
             "each recipe's mean fMSE should sit at 0.6-1.6x of theirs.", "",
             "| rows | n | MSE | fMSE | fMSE vs iHarmony4 | fMSE < 100 | PSNR | ΔE2000 |",
             "|---|---|---|---|---|---|---|---|"]
    lines.append(_metric_row("all", t, np.ones(len(t["mse"]), dtype=bool)))
    for r in sorted(set(t["recipe"].tolist())):
        lines.append(_metric_row(f"recipe {r}", t, t["recipe"] == r))
    for lo, hi, label in FG_BINS:
        lines.append(_metric_row(f"foreground {label}", t, (t["fg_ratio"] >= lo) & (t["fg_ratio"] < hi)))
    ih = IHARMONY4_INPUT
    lines.append(f"| iHarmony4 test input composites (reference) | 7404 | {ih['mse']} | "
                 f"{ih['fmse']} | 1.00x | – | {ih['psnr']} | – |")
    return lines


def _judge_section(manifest: dict[str, Any], t: dict[str, np.ndarray]) -> list[str]:
    """Per recipe: draws the realism judge saw, the share it turned down (each was drawn
    again), and how often it gave each reason (a draw can have several)."""
    notes = manifest["notes"]
    judged = {k[len(JUDGED):]: v for k, v in notes.items() if k.startswith(JUDGED)}
    if not judged:
        return []
    reasons = sorted({k.partition(":")[2] for k in notes if k.partition(":")[2] in JUDGE_REASONS})
    lines = ["", "## Realism judge", "",
             "Every draw is judged (`tasks/synthesize/realism.py`, thresholds under `synthesis.realism`); "
             "a rejected draw is drawn again (another look pair or reference) up to "
             "`synthesis.max_attempts` times. Each row keeps the judge's features in its "
             "`realism` column.", "",
             "| recipe | judged | rejected | " + " | ".join(f"`{r}`" for r in reasons) + " |",
             "|---|---|---|" + "---|" * len(reasons)]
    for recipe in sorted(judged):
        kept = int((t["recipe"] == recipe).sum())
        rate = 1 - kept / judged[recipe] if judged[recipe] else 0.0
        cells = [str(notes.get(f"{recipe}:{r}", 0)) for r in reasons]
        lines.append(f"| {recipe} | {judged[recipe]} | {rate:.0%} | " + " | ".join(cells) + " |")
    lines += [""] + [f"- `{r}`: {describe(r)}" for r in reasons]
    return lines


# Notes that the yield section reads (not listed again among the redraws and notes).
_YIELD_NOTES = ("lost:", "made:", "drawn_phrases")


def _yield_section(cfg: RunConfig, manifest: dict[str, Any]) -> list[str]:
    """Rows per phrase achieved, where the others went, and the measured projection."""
    from tasks.publish.yield_report import measured, yield_of

    merged = {"notes": manifest["notes"], "skips": manifest["skips"], "rows": manifest["totals"]["rows"],
              "tasks": sum(s["tasks"] for s in manifest["splits"].values())}
    y = yield_of([merged], cfg.synthesis.composites_per_task)
    lines = ["", "## Yield", "",
             f"{y['phrases_in']} phrases in; {sum(y['phrases_skipped'].values())} skipped before any draw; "
             f"{y['phrases_drawn']} drawn x {cfg.synthesis.composites_per_task} composites = "
             f"{y['samples_drawn']} samples: **{y['rows']} rows** ({y['rows_per_phrase']:.3f} per phrase), "
             f"{sum(y['samples_lost'].values())} samples lost after {cfg.synthesis.max_attempts} draws."]
    if y["phrases_skipped"]:
        lines += ["", "Skipped before drawing: " + ", ".join(
            f"{describe(k)} (`{k}`) {v}" for k, v in y["phrases_skipped"].items())]
    if y["samples_lost"]:
        lines += ["", "Lost (the last draw's reason): " + ", ".join(
            f"`{k}` {v}" for k, v in sorted(y["samples_lost"].items(), key=lambda kv: -kv[1]))]
    got = measured(cfg)
    if got:
        lines += ["", f"Measured for these synthesis settings ({got['measured']}, {got['input']}): "
                  f"{got['rows_per_phrase']:.3f} rows per phrase, the rate `phraseharmony build --dry-run` "
                  "projects with."]
    return lines


def _skips_section(manifest: dict[str, Any]) -> list[str]:
    lines = ["", "## Skipped", "",
             "Every input that did not become a row, by reason (annotation stage, then "
             "synthesis).", "", "| stage | reason | count | examples |", "|---|---|---|---|"]
    for stage, log in (("annotations", manifest["annotation_skips"]), ("synthesis", manifest["skips"])):
        for reason, n in log["counts"].items():
            ex = ", ".join(f"`{e}`" for e in log["examples"].get(reason, [])[:3])
            lines.append(f"| {stage} | {describe(reason)} (`{reason}`) | {n} | {ex} |")
    if not manifest["annotation_skips"]["counts"] and not manifest["skips"]["counts"]:
        lines.append("| – | none | 0 | |")
    kept = {k: v for k, v in manifest["notes"].items() if not k.startswith(_YIELD_NOTES)}
    redraws = {k: v for k, v in kept.items()
               if ":" in k and not k.startswith(JUDGED) and k.partition(":")[2] not in JUDGE_REASONS}
    notes = {k: v for k, v in kept.items() if ":" not in k and v}
    if redraws:
        lines += ["", "Draws the quality filter or the reference search turned down (the "
                  "sample was drawn again):", ""]
        lines += [f"- {describe(k)}: {v}" for k, v in sorted(redraws.items())]
    if notes:
        lines += ["", "Notes (kept, but worth knowing): " + ", ".join(
            f"{k.replace('_', ' ')}: {v}" for k, v in notes.items())]
    left_out = manifest.get("luts_left_out") or []
    if left_out:
        lines += ["", "User LUT files left out of the library:", ""]
        lines += [f"- `{p}`" for p in left_out]
    return lines


def _captions_section(out_dir: Path | None, manifest: dict[str, Any]) -> list[str]:
    """Caption statistics from the captions store (one row per photo)."""
    info = manifest.get("captions") or {}
    lines = ["", "## Captions", ""]
    if not info.get("on"):
        why = ("turned off (`captions.enabled: false`)" if info.get("setting") is False else
               f"off: the weights of `{info.get('blip_model')}` and `{info.get('clip_model')}` were "
               "not found where the build ran (`captions.enabled: auto`; `phraseharmony models "
               "download` fetches them)")
        return lines + [f"Captions and CLIP embeddings are {why}: the `caption*` and `clip_*` "
                        "columns are null."]
    tables = []
    for split in sorted(manifest["splits"]):
        for path in sorted((out_dir / "captions" / split).glob("part-*.parquet")):
            t = pq.read_table(path, columns=["caption", "caption_clip_score", "beam_caption"])
            tables.append(t.append_column("split", pa.array([split] * t.num_rows)))
    if not tables:
        return lines + ["No captions were made (no readable photo)."]
    t = pa.concat_tables(tables).to_pydict()
    scores = np.asarray(t["caption_clip_score"], np.float64)
    words = np.asarray([len(c.split()) for c in t["caption"]], np.float64)
    beam_won = np.mean([c == b for c, b in zip(t["caption"], t["beam_caption"])])
    meta = pq.read_schema(next(p for p in sorted((out_dir / "captions").rglob("part-*.parquet")))).metadata
    model = {k.decode().removeprefix("phraseharmony."): v.decode() for k, v in meta.items()}
    lines += [f"Per photo: BLIP `{model.get('blip_model')}` wrote k sampled candidates and one "
              f"beam caption ({model.get('decoding')}); CLIP `{model.get('clip_model')}` "
              f"({model.get('clip_dim')}-d, {model.get('device')}) scored each against the photo "
              "and the best became `caption`.", "",
              f"- photos captioned: {len(scores)}",
              f"- CLIP score of the chosen caption: mean {scores.mean():.3f}, std {scores.std():.3f}, "
              f"min {scores.min():.3f}, max {scores.max():.3f}",
              f"- caption length: mean {words.mean():.1f} words (std {words.std():.1f})",
              f"- the beam-search caption won for {beam_won:.0%} of photos", "",
              "| split | photo's caption | CLIP score |", "|---|---|---|"]
    for split in sorted(set(t["split"])):
        picks = [i for i, s in enumerate(t["split"]) if s == split][:3]
        lines += [f"| {split} | {t['caption'][i]} | {t['caption_clip_score'][i]:.3f} |" for i in picks]
    return lines


def _columns_section() -> list[str]:
    lines = ["", "## Columns", "", "| column | type | meaning |", "|---|---|---|"]
    for name, typ, nullable, doc in FIELDS:
        lines.append(f"| `{name}` | {typ}{' (nullable)' if nullable else ''} | {doc} |")
    return lines


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def pick_preview_rows(out_dir: Path, manifest: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """The first composite of up to ``n`` different images, in manifest order."""
    picked, seen = [], set()
    cols = ["image_id", "sample_id", "phrase", "recipe", "lut_fg", "lut_bg", "reference_task_id",
            "caption", "composite", "target", "mask"]
    for shard in manifest["shards"]:
        pf = pq.ParquetFile(out_dir / shard["path"])
        for g in range(pf.num_row_groups):
            for row in pf.read_row_group(g, columns=cols).to_pylist():
                if row["image_id"] not in seen and row["sample_id"].endswith("#0"):
                    seen.add(row["image_id"])
                    picked.append(row)
                    if len(picked) == n:
                        return picked
    return picked


def _change_panel(row: dict[str, Any], tile: int) -> Image.Image:
    """|composite - target| x 4 (what changed, brightened), the mask outlined in yellow."""
    comp, target = (np.asarray(Image.open(io.BytesIO(row[k])).convert("RGB"), np.int16)
                    for k in ("composite", "target"))
    diff = np.clip(np.abs(comp - target) * 4, 0, 255).astype(np.uint8)
    mask = np.asarray(Image.open(io.BytesIO(row["mask"])), dtype=bool)
    inner = mask.copy()
    inner[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    diff[mask & ~inner] = (255, 220, 0)
    return Image.fromarray(diff).resize((tile, tile))


def _provenance(row: dict[str, Any]) -> str:
    if row["recipe"] == "lut_pair":
        return f"lut_pair: {row['lut_fg']} in the mask, {row['lut_bg']} around it"
    if row["recipe"] == "lut_fg":
        return f"lut_fg: {row['lut_fg']} in the mask"
    return f"{row['recipe']} toward {row['reference_task_id']}"


def render_preview(rows: list[dict[str, Any]], tile: int = 192) -> Image.Image:
    """A grid: one line per sample, composite | target | what changed (mask outlined);
    the phrase, how the composite was made and (when there is one) the photo's caption
    underneath."""
    pad, text_h = 6, 58 if any(r.get("caption") for r in rows) else 40
    header = 24
    width = 3 * tile + 4 * pad
    height = header + max(1, len(rows)) * (tile + text_h + pad) + pad
    canvas = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(canvas)
    font = _font(14)
    for i, label in enumerate(("composite", "target", "change x4, mask outlined")):
        draw.text((pad + i * (tile + pad), 5), label, fill=(30, 30, 30), font=font)
    for r, row in enumerate(rows):
        y = header + r * (tile + text_h + pad)
        for i, key in enumerate(("composite", "target")):
            im = Image.open(io.BytesIO(row[key])).convert("RGB").resize((tile, tile))
            canvas.paste(im, (pad + i * (tile + pad), y))
        canvas.paste(_change_panel(row, tile), (pad + 2 * (tile + pad), y))
        draw.text((pad, y + tile + 3), f'"{row["phrase"]}"', fill=(20, 20, 20), font=font)
        draw.text((pad, y + tile + 21), _provenance(row)[:80], fill=(90, 60, 20), font=font)
        if row.get("caption"):
            draw.text((pad, y + tile + 39), f"caption: {row['caption']}"[:90], fill=(70, 70, 120), font=font)
    if not rows:
        draw.text((pad, header + 10), "no rows", fill=(200, 0, 0), font=font)
    return canvas


def write_preview(out_dir: Path, manifest: dict[str, Any], path: Path | None = None, n: int = 8) -> Path:
    path = path or out_dir / PREVIEW_NAME
    buf = io.BytesIO()
    render_preview(pick_preview_rows(out_dir, manifest, n)).save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())
    return path


def write_card(cfg: RunConfig, out_dir: Path, manifest: dict[str, Any]) -> Path:
    path = out_dir / CARD_NAME
    text = render_card(cfg, manifest, read_stat_columns(out_dir, manifest), out_dir)
    write_bytes_atomic(path, text.encode())
    return path

