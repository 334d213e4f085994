"""Validation and evaluation: metrics of a predictor over a split, and a sample grid.

``evaluate`` (``phraseharmony evaluate CHECKPOINT --data DATASET``) writes
``metrics.json``, ``metrics.md`` (the model's row beside the input composites' row per
group) and ``grid.png`` (composite | output | target | mask per sample).
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from schemas.train_config import TrainConfig
from tasks.core.files import write_bytes_atomic
from train import checkpoint
from train.loader import Loader
from train.metrics import Metrics, RegionMetrics, markdown_table, per_image, published_table
from train.models import blend, build_model, phrase_model, split_output
from train.overlap import overlap_lines
from train.preflight import check_text
from train.sources import DataError, open_source

Predictor = Callable[[dict[str, Any]], torch.Tensor]
PROTOCOLS = {
    "clean": "per image on 0-255 values at the training size (OpenCV decoding, area resizing, the "
             "output rounded), then averaged; binary mask; PSNR peak 255 (capped at 100)",
    "ht": "the authors' evaluation (HT's test.py and ih_evaluation.py): PIL decoding, bilinear resizing "
          "to 256, the output truncated to 8 bits and read back from JPEG q100 4:2:0, the mask through "
          "PIL's convert('1'); per image, then averaged",
}


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


@torch.no_grad()
def run_metrics(
    predict: Predictor,
    loader: Loader,
    max_batches: int | None = None,
    grid_samples: int = 8,
    regions: RegionMetrics | None = None,
    blend_by_region: bool = False,
    protocol: str = "clean",
) -> tuple[dict[str, Any], dict[str, Any], list[np.ndarray]]:
    """(model metrics, input-composite metrics, grid rows) over one pass of ``loader``.
    The output is blended into the composite's background before it is measured (HT):
    by the annotated mask, or with ``blend_by_region`` by the region the model found
    itself (a phrase-only model has no mask to blend by). ``regions`` collects the
    predicted regions' IoU; the grid then shows the region too. ``protocol``: "clean"
    (``train.metrics.per_image``) or "ht" (the authors' evaluation, ``train.protocol_ht``)."""
    if protocol == "ht":
        from train.protocol_ht import per_image_batch as measure
    else:
        measure = per_image
    model_m, input_m, grid = Metrics(), Metrics(), []
    for i, batch in enumerate(loader.epoch(0)):
        if max_batches is not None and i >= max_batches:
            break
        comp, target, mask = batch["composite"], batch["target"], batch["mask"]
        out, logits = split_output(predict(batch))
        prob = torch.sigmoid(logits.float()) if logits is not None else None
        pred = blend(out.float(), comp, prob if blend_by_region and prob is not None else mask)
        model_m.add(measure(pred, target, mask), batch["recipe"])
        input_m.add(measure(comp, target, mask), batch["recipe"])
        if regions is not None and prob is not None:
            regions.add(prob, mask)
        for j in range(min(len(comp), grid_samples - len(grid))):
            cells = [comp[j], pred[j], target[j], mask[j].expand(3, -1, -1)]
            if prob is not None:
                cells.append(prob[j].expand(3, -1, -1))
            row = torch.cat([c.float().clamp(0, 1) for c in cells], dim=2)
            grid.append((row.permute(1, 2, 0).float().cpu().numpy() * 255).round().astype(np.uint8))
    return model_m.summary(), input_m.summary(), grid


def write_png(path: Path, rows: list[np.ndarray]) -> Path | None:
    """Rows stacked into one PNG (RGB), written atomically; None when there are none."""
    if not rows:
        return None
    ok, data = cv2.imencode(".png", np.concatenate(rows, axis=0)[..., ::-1])
    if not ok:
        raise RuntimeError(f"{path}: PNG encoding failed")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data.tobytes())
    return path


def write_report(
    out: Path, model: dict[str, Any], inputs: dict[str, Any], grid: list[np.ndarray], info: dict[str, Any]
) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        **info,
        "metrics": model,
        "input_composites": inputs,
        "definitions": (PROTOCOLS[info.get("protocol", "clean")]),
    }
    write_bytes_atomic(out / "metrics.json", (json.dumps(report, indent=2) + "\n").encode())
    title = (f"`{info.get('checkpoint', 'the model')}` on {info.get('data', '')} ({info.get('split', '')}), "
             f"protocol {info.get('protocol', 'clean')}")
    table = markdown_table(model, inputs, title)
    if info.get("kind") == "iharmony4":   # the papers' rows beside ours
        table += "\n" + published_table()
    table += overlap_lines(info.get("overlap"))
    write_bytes_atomic(out / "metrics.md", table.encode())
    paths = {"metrics_json": out / "metrics.json", "metrics_md": out / "metrics.md"}
    if write_png(out / "grid.png", grid):
        paths["grid"] = out / "grid.png"
    return paths


def pick_device(setting: str, local_rank: int = 0) -> torch.device:
    if setting == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(setting)


def load_model(ckpt: Path, device: torch.device) -> tuple[torch.nn.Module, TrainConfig, dict[str, str]]:
    if Path(ckpt).is_file():   # the authors' latest_net_G.pth: HT+ at the paper's size, their settings
        from train.ht_authors import from_authors, load_authors_file

        cfg = TrainConfig()
        model = build_model(cfg.model, cfg.data.size)
        try:
            model.load_state_dict(from_authors(load_authors_file(Path(ckpt)), cfg.model.patch))
        except RuntimeError as exc:
            raise checkpoint.CheckpointError(f"{ckpt}: not HT+ at the paper's size "
                                             f"({str(exc).splitlines()[0]})") from None
        return model.to(device).eval(), cfg, {"config": cfg.model_dump_json(), "source": "authors"}
    meta = checkpoint.read_meta(ckpt)
    try:
        cfg = TrainConfig.model_validate_json(meta["config"])
    except (KeyError, ValueError) as exc:
        raise checkpoint.CheckpointError(f"{ckpt}: its run config is missing or invalid ({exc})") from None
    text_dim = int(meta["text_dim"]) if meta.get("text_dim") else None
    model = build_model(cfg.model, cfg.data.size, text_dim)
    found = getattr(getattr(model, "clipseg", None), "identity", None)
    if found is not None and meta.get("clipseg") not in (None, found):
        raise checkpoint.CheckpointError(
            f"{ckpt}: trained with CLIPSeg {meta['clipseg']}, but {cfg.model.clipseg} is now {found} "
            "(the head was fitted to the other CLIPSeg's regions)")
    try:
        model.load_state_dict(checkpoint.load_weights(ckpt))
    except RuntimeError as exc:
        raise checkpoint.CheckpointError(f"{ckpt}: its weights do not fit its own config "
                                         f"({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), cfg, meta


def evaluate(
    ckpt_path: Path,
    data: Path,
    split: str = "test",
    out: Path | None = None,
    batch_size: int = 16,
    workers: int = 2,
    device: str = "auto",
    protocol: str = "clean",
    exclude_overlap: bool = False,
    train_data: list[Path] | None = None,
) -> dict[str, Any]:
    """Metrics of a checkpoint on every row of ``split`` of ``data`` (ours or iHarmony4).
    ``protocol``: "clean" (ours: OpenCV decoding, area resizing, rounded outputs) or "ht"
    (the authors' evaluation, ``train.protocol_ht``); the report names it.
    ``exclude_overlap``: on iHarmony4, leave out the test images whose source photo the
    training data held (``train.overlap``; the builds the checkpoint's config names,
    or ``train_data``); without it the report warns where overlap is possible."""
    if protocol not in ("clean", "ht"):
        raise checkpoint.CheckpointError(f"protocol {protocol!r}: want clean or ht")
    ckpt = checkpoint.resolve(ckpt_path)
    dev = pick_device(device)
    model, cfg, meta = load_model(ckpt, dev)
    source = open_source(data)
    overlap = _overlap(source, split, exclude_overlap, train_data, cfg, meta)
    text_keys = getattr(model, "text_keys", ())
    loader = Loader(
        source,
        split,
        cfg.data.model_copy(update={"workers": workers}),
        batch_size,
        cfg.seed,
        train=False,
        text_keys=text_keys,
        phrases=phrase_model(cfg.model),
        device=dev,
        select=False,
        decode="ht" if protocol == "ht" else "opencv",
    )
    check_text(source, loader.units, text_keys, f"the checkpoint {ckpt}", getattr(model, "text_dim", None))
    bf16 = dev.type == "cuda" and cfg.precision != "fp32"
    out = Path(out) if out else (ckpt.parent if ckpt.is_file() else ckpt) / f"eval-{split}"
    info = {
        "checkpoint": str(ckpt),
        "step": int(meta.get("step", 0)),
        "data": str(data),
        "split": split,
        "dataset_manifest_hash": source.manifest_hash,
        "kind": source.kind,
        "protocol": protocol,
        **({"overlap": overlap} if overlap else {}),
    }
    if cfg.model.kind == "clipseg_ht":
        if protocol != "clean":
            raise checkpoint.CheckpointError("the text-only evaluation runs with --protocol clean (the "
                                             "authors' protocol scores a model given the annotated mask)")
        return _evaluate_text(model, loader, lambda: autocast(dev, bf16), meta, cfg, out, info)

    def predict(batch: dict[str, Any]) -> torch.Tensor:
        with autocast(dev, bf16):
            return model(batch["composite"], batch["mask"], {k: batch[k] for k in text_keys})

    model_m, input_m, grid = run_metrics(predict, loader, grid_samples=cfg.grid_samples, protocol=protocol)
    info["skips"] = loader.take_skip_report()
    paths = write_report(out, model_m, input_m, grid, info)
    return {
        "out": str(out),
        **{k: str(v) for k, v in paths.items()},
        "overall": model_m["overall"],
        "input_overall": input_m["overall"],
        "skips": info["skips"],
    }


def _overlap(source, split: str, exclude: bool, train_data: list[Path] | None, cfg: TrainConfig,
             meta: dict[str, str]) -> dict[str, Any]:
    """Leave out (``exclude``) or warn of iHarmony4 test photos the training data held."""
    from train.overlap import held_ids, overlap_note, overlapping, training_dirs

    if source.kind != "iharmony4":
        if exclude:
            raise DataError(f"{source.root}: --exclude-overlap leaves out iHarmony4 test images; this is "
                            f"a {source.kind} dataset")
        return {}
    # The authors' checkpoint trained on iHarmony4 alone.
    dirs = list(train_data) if train_data else [] if meta.get("source") == "authors" else training_dirs(cfg)
    names = source.names(split)
    dropped = overlapping(names, held_ids(dirs, cfg.data.train_split)) if exclude else None
    if dropped:
        source.leave_out(split, set(dropped))
    return overlap_note(names, dropped, dirs)


def _evaluate_text(model, loader, autocast_ctx, meta, cfg, out: Path, info: dict) -> dict[str, Any]:
    from train.evaluate_text import text_only_metrics, text_only_table

    threshold = float(meta.get("region_threshold") or 0.5)
    report, grid = text_only_metrics(model, loader, autocast_ctx, threshold, info["split"], cfg.grid_samples)
    info["skips"] = loader.take_skip_report()
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "metrics.json", (json.dumps({**info, **report}, indent=2) + "\n").encode())
    title = f"`{info['checkpoint']}` on {info['data']} ({info['split']})"
    write_bytes_atomic(out / "metrics.md", text_only_table(report, title, info["split"]).encode())
    grid_path = write_png(out / "grid.png", grid)
    rows = report["rows"]
    main = rows.get("refined region") or rows.get("CLIPSeg region") or rows["annotated mask"]
    return {
        "out": str(out),
        "metrics_json": str(out / "metrics.json"),
        "metrics_md": str(out / "metrics.md"),
        **({"grid": str(grid_path)} if grid_path else {}),
        "overall": main["overall"],
        "input_overall": rows["input composites"]["overall"],
        "regions": report["regions"],
        "skips": info["skips"],
    }
