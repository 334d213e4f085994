"""The ``build-dataset`` flow: annotations -> images -> shards -> manifest -> card.

It only composes stages from ``tasks/`` (as Prefect tasks, ``flows/stages.py``). Every
stage skips work whose output is already current, so a scheduled run finishes a
half-done job and a run on a done job ends fast. Ctrl-C (KeyboardInterrupt) cancels
what is queued, lets nothing be half-published and ends the run as Cancelled.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.events import emit_event
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.states import Cancelled, Completed, Failed

from flows.caption_stage import caption_stage
from flows.runners import make_task_runner
from flows.stages import acquire_task, artifact_key, build_shard_task, ingest_task
from lut_library import left_out_for, version_for
from schemas.config import RunConfig, load_config
from schemas.errors import UserError
from tasks.acquire.annotations import SkipLog
from tasks.acquire.ledger import read_ledger
from tasks.captions.models import captions_enabled
from tasks.core.files import exclusive, revoke
from tasks.core.shard_plan import ShardSpec, remove_stale
from tasks.publish.build_state import dataset_summary, shard_state
from tasks.publish.card import write_card, write_preview
from tasks.publish.manifest import build_manifest, read_manifest_or_none, write_manifest

# Machine-readable shard progress for callers that show a bar (the CLI); it does not
# propagate, so it never reaches a log.
PROGRESS_LOG = logging.getLogger("phraseharmony.progress")
PROGRESS_LOG.propagate = False
# Seconds to wait for running shards to stop after Ctrl-C.
CANCEL_GRACE_S = 15.0


class Interrupted(Exception):
    """Ctrl-C during the build; carries what had completed."""


class BuildInterrupted(Exception):
    """What a direct call of the flow raises after Ctrl-C (the run ends Cancelled)."""


def synthesize_shards(cfg: RunConfig, specs: list[ShardSpec], ledger: dict[int, dict],
                      token: str, logger, captions: bool = False) -> list[dict[str, Any]]:
    """Build shards on the configured task runner, reporting each as it finishes.

    The runner is used directly (not as a subflow) so the per-image ledger rows travel
    with each shard's task run only and never land in the API as flow parameters.
    """
    artifact = create_progress_artifact(progress=0.0, key=artifact_key("shards", cfg.name),
                                        description=f"{len(specs)} shards to build")
    markers: list[dict[str, Any]] = []
    with make_task_runner(cfg.runner) as runner:
        futures = [
            runner.submit(build_shard_task, parameters={
                "cfg": cfg, "spec": spec, "token": token, "captions": captions,
                "ledger": {i: ledger[i] for i in spec.image_ids if i in ledger}})
            for spec in specs
        ]
        try:
            for future in as_completed(futures):
                marker = future.result()
                markers.append(marker)
                n = len(markers)
                logger.info("[%d/%d] shard %s: %d rows, %d skipped", n, len(specs), marker["shard"],
                            marker["rows"], sum(marker["skips"]["counts"].values()))
                PROGRESS_LOG.info("shard", extra={"shard_progress": (n, len(specs))})
                update_progress_artifact(artifact, progress=100.0 * n / len(specs))
        except KeyboardInterrupt:
            _stop(futures, cfg.out_dir, token)
            raise Interrupted(len(markers)) from None
    return markers


def _stop(futures, out_dir, token: str) -> None:
    """Cancel queued shards; running ones see the revoked token at their next image and
    stop without publishing (workers ignore SIGINT: the build decides, not the signal)."""
    revoke(out_dir, token)
    for future in futures:
        wrapped = getattr(future, "wrapped_future", None)
        if wrapped is not None:
            wrapped.cancel()
    deadline = time.monotonic() + CANCEL_GRACE_S
    for future in futures:
        try:
            future.wait(timeout=max(0.0, deadline - time.monotonic()))
        except BaseException:  # noqa: BLE001 - a second Ctrl-C, a broken pool: stop waiting
            break


@flow(name="build-dataset", log_prints=True)
def build_dataset(config: str = "configs/sample.yaml", out_dir: str | None = None,
                  overrides: list[str] | None = None, verify: bool = False):
    """Build (or finish, or confirm) the dataset described by ``config``.

    ``overrides`` are ``key.sub=value`` strings (e.g. ``runner.kind=processes``);
    ``verify`` re-hashes finished shards instead of trusting size checks. Returns a
    summary (rows, shards, where); the run ends Cancelled after Ctrl-C.
    """
    logger = get_run_logger()
    bridge = _LogBridge(logger)
    logging.getLogger("phraseharmony").addHandler(bridge)
    started = time.monotonic()
    try:
        cfg = load_config(config, overrides, out_dir)
        cfg = cfg.model_copy(update={"out_dir": cfg.out_dir.resolve()})
        with exclusive(cfg.out_dir) as token:
            summary = _build(cfg, verify, token, logger)
    except UserError as exc:
        # One line, no traceback: the input, config or folder needs the user's hand.
        logger.error("%s", exc)
        return Failed(message=str(exc), data=exc)
    except (KeyboardInterrupt, Interrupted) as exc:
        done = exc.args[0] if isinstance(exc, Interrupted) and exc.args else 0
        message = (f"interrupted after {time.monotonic() - started:.0f} s: {done} shard(s) "
                   f"completed this run and are kept; a rerun resumes from there")
        logger.warning(message)
        return Cancelled(message=message, data=BuildInterrupted(message))
    finally:
        logging.getLogger("phraseharmony").removeHandler(bridge)
    message = _summary_line(summary)
    create_markdown_artifact(_summary_markdown(cfg, summary), key=artifact_key("build", cfg.name),
                             description=message)
    _announce(cfg, message)
    return Completed(message=message, data=summary)


def _announce(cfg: RunConfig, message: str) -> None:
    """An event whose name is the summary: `prefect deployment run --watch` prints the
    run's events, so its users see rows, shards and where before the final state."""
    flow_run_id = flow_run.get_id()
    emit_event(event="phraseharmony.dataset.built",
               resource={"prefect.resource.id": f"phraseharmony.dataset.{artifact_key('', cfg.name)}",
                         "prefect.resource.name": message},
               related=[{"prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                         "prefect.resource.role": "flow-run"}] if flow_run_id else None)


def _build(cfg: RunConfig, verify: bool, token: str, logger) -> dict[str, Any]:
    logger.info("config %s (%s) -> %s", cfg.name, cfg.config_hash(), cfg.out_dir)
    _say_what_config_changes(cfg, logger)
    luts_version, luts_left_out = version_for(cfg.luts), left_out_for(cfg.luts)
    for problem in luts_left_out:
        logger.warning("LUT left out of the library: %s", problem)
    # Before any work: `captions.enabled: true` with weights missing stops here.
    captions_on, why = captions_enabled(cfg)
    (logger.info if captions_on or cfg.captions.enabled is False else logger.warning)(why)
    ingested = ingest_task(cfg)
    images = ingested["images"]
    logger.info("annotations: %d phrase tasks over %d images%s", ingested["rows"], len(images),
                " (unchanged)" if ingested["reused"] else "")
    counts = acquire_task(cfg, list(images.values()))
    logger.info("images: %s", dict(sorted(counts.items())))
    ledger = read_ledger(cfg.images_dir)

    extras = caption_stage(cfg, captions_on, ledger, token, logger)
    state = shard_state(cfg, ledger, luts_version, verify, extras)
    removed = remove_stale(cfg.out_dir, state.specs)
    if removed:
        logger.info("removed %d file(s) the plan no longer has or a killed run left: %s",
                    len(removed), ", ".join(removed[:5]) + (", ..." if len(removed) > 5 else ""))
    done = dict(state.done)
    if state.pending:
        logger.info("%d of %d shards to build on %s", len(state.pending), len(state.specs),
                    cfg.runner.kind)
        for marker in synthesize_shards(cfg, state.pending, ledger, token, logger, captions_on):
            done[marker["shard"]] = marker
    elif not state.waiting:
        logger.info("all %d shards complete: nothing to build", len(state.specs))
    built = len(state.pending)
    if state.waiting:
        # Not complete: no manifest (an old one would claim otherwise).
        (cfg.out_dir / "_manifest.json").unlink(missing_ok=True)
        logger.info("%d shards wait for images that will be retried next run; %d built this "
                    "run, %d complete", len(state.waiting), built, len(done))
        return {"out_dir": str(cfg.out_dir), "built": built, "waiting": len(state.waiting),
                "complete": False, "images": dict(counts)}

    manifest = build_manifest(cfg, [done[s.name] for s in state.specs], ingested["files"],
                              SkipLog.from_json(ingested["skips"]), luts_version, luts_left_out,
                              captions_on, ingested["images"])
    changed = write_manifest(cfg.out_dir, manifest)
    card, preview = cfg.out_dir / "README.md", cfg.out_dir / "preview.png"
    if changed or not card.exists() or not preview.exists():
        write_card(cfg, cfg.out_dir, manifest)
        write_preview(cfg.out_dir, manifest)
    summary = {**dataset_summary(cfg, manifest, built), "images": dict(counts)}
    logger.info("dataset %s: %s", "updated" if changed else "unchanged", _summary_line(summary))
    return summary


def _say_what_config_changes(cfg: RunConfig, logger) -> None:
    """A config that changes the bytes rebuilds every shard: say so, and why, first."""
    previous = read_manifest_or_none(cfg.out_dir)
    if previous is None or previous.get("config_hash") == cfg.config_hash():
        return
    changed = _changed_keys(previous.get("config") or {}, cfg.output_relevant())
    logger.warning("the config differs from the one %s was built with (%s): every shard will "
                   "be rebuilt", cfg.out_dir, ", ".join(changed[:6]) or "settings not recorded")


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def _summary_line(summary: dict[str, Any]) -> str:
    if not summary.get("complete"):
        return (f"not complete: {summary['built']} shards built this run, {summary['waiting']} "
                f"wait for images to be retried; output in {summary['out_dir']}")
    return (f"{summary['rows']} rows in {summary['shards']} shards ({summary['built']} built "
            f"this run) in {summary['out_dir']}")


def _summary_markdown(cfg: RunConfig, summary: dict[str, Any]) -> str:
    lines = [f"# build-dataset `{cfg.name}`", "", _summary_line(summary), ""]
    if summary.get("complete"):
        lines += ["| split | rows |", "|---|---|"]
        lines += [f"| {s} | {n} |" for s, n in summary["splits"].items()]
        lines += ["", f"- manifest: `{summary['manifest']}`", f"- card: `{summary['card']}`",
                  f"- preview: `{summary['preview']}`"]
    lines += ["", f"images this run: {summary.get('images', {})}"]
    return "\n".join(lines)


class _LogBridge(logging.Handler):
    """Forwards the pipeline's own warnings (damaged files repaired, stale files removed)
    to the flow run's logger, so they show in the run's log and the CLI."""

    def __init__(self, run_logger) -> None:
        super().__init__(logging.INFO)
        self.run_logger = run_logger

    def emit(self, record: logging.LogRecord) -> None:
        if record.name != PROGRESS_LOG.name:
            self.run_logger.log(record.levelno, record.getMessage())


if __name__ == "__main__":  # pragma: no cover - `python -m flows.build_dataset CONFIG`
    import sys

    print(build_dataset(*(sys.argv[1:2] or [])))
