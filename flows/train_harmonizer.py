"""The ``train-harmonizer`` flow: check the dataset, train, evaluate.

It only calls ``train/`` (which imports no Prefect) and publishes what a reader wants to
see in the UI: the evaluation's metrics table beside the input composites' row, and the
sample grid (composite | output | target | mask).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.stages import artifact_key
from schemas.train_config import TrainConfig, load_train_config

# Grids up to this size are embedded in the artifact; bigger ones are linked by path.
INLINE_GRID_BYTES = 1_500_000


@task(name="check-dataset")
def check_dataset(cfg: TrainConfig, resume: bool, eval_split: str | None) -> dict[str, Any]:
    """Refuse what would fail later (no rows, a missing validation or evaluation split,
    a text model on a build without captions, a resume with other settings) before any
    training starts."""
    from train.mix import describe_data
    from train.preflight import check_run

    info = check_run(cfg, resume, eval_split)
    get_run_logger().info(
        "dataset %s (%s): %d training rows in %d units; evaluation on %s",
        describe_data(cfg.data),
        info["kind"],
        info["rows"],
        info["units"],
        info["eval_split"],
    )
    return info


@task(name="train")
def train_task(cfg: TrainConfig, resume: bool) -> dict[str, Any]:
    from train.loop import train

    logger = get_run_logger()
    return train(cfg, resume=resume, say=logger.info)


@task(name="evaluate")
def evaluate_task(checkpoint: str, data: str, split: str, workers: int) -> dict[str, Any]:
    from train.evaluate import evaluate

    result = evaluate(Path(checkpoint), Path(data), split, workers=workers)
    get_run_logger().info(
        "evaluation on %s: fMSE %.1f (input %.1f), PSNR %.2f; %s",
        split,
        result["overall"]["fmse"],
        result["input_overall"]["fmse"],
        result["overall"]["psnr"],
        result["metrics_md"],
    )
    return result


def _artifact(cfg: TrainConfig, result: dict[str, Any]) -> str:
    table = Path(result["metrics_md"]).read_text()
    lines = [f"# {cfg.name}: evaluation", "", f"Checkpoint `{Path(result['out']).parent}`", "", table]
    grid = Path(result["grid"]) if result.get("grid") else None
    if grid is not None and grid.stat().st_size <= INLINE_GRID_BYTES:
        data = base64.b64encode(grid.read_bytes()).decode()
        lines += ["", "composite | output | target | mask", "", f"![grid](data:image/png;base64,{data})"]
    elif grid is not None:
        lines += ["", f"Sample grid (composite | output | target | mask): `{grid}`"]
    return "\n".join(lines)


@flow(name="train-harmonizer")
def train_harmonizer(
    config: str = "configs/train-sample.yaml",
    overrides: list[str] | None = None,
    resume: bool = False,
    eval_split: str | None = None,
) -> dict[str, Any]:
    """Train a harmonizer on a built dataset (``config``: a configs/train-*.yaml; ``overrides``
    as ``key=value``, e.g. ``data.dir=out/vgphrasecut``), then evaluate its last checkpoint
    on ``eval_split`` (default: the test split when the dataset has one, else validation;
    ``check_dataset`` refuses a run without one)."""
    cfg = load_train_config(config, overrides or [])
    data = check_dataset(cfg, resume, eval_split)
    summary = train_task(cfg, resume)
    split = data["eval_split"]
    result = evaluate_task(summary["checkpoint"], str(cfg.data.dir), split, cfg.data.workers)
    create_markdown_artifact(
        _artifact(cfg, result),
        key=artifact_key("train", cfg.name),
        description=f"{cfg.name}: metrics on {split} and sample grid",
    )
    return {"dataset": data, "train": summary, "evaluation": result}
