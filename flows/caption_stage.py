"""The captions stage in the flow: bring every ready part up to date, then name each
shard's caption parts for its inputs digest. Parts run one after another in the flow's
process (one model load, one GPU) under threads/processes; under Dask each part is a
task that requires the ``runner.gpu_resource`` resource, so a cluster sends captions to
GPU workers and synthesis to the others."""

from __future__ import annotations

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from flows.runners import make_task_runner
from flows.stages import artifact_key, caption_part_task
from schemas.config import RunConfig
from tasks.acquire.annotations import read_annotation_table
from tasks.captions.plan import CAPTIONS_OFF, caption_extras, part_phrases, phrases_by_image
from tasks.core.shard_plan import plan_shards
from tasks.publish.build_state import is_ready


def caption_stage(cfg: RunConfig, on: bool, ledger: dict, token: str, logger) -> dict[str, str]:
    """{shard name: its caption parts}, computing the parts that are not current."""
    table = read_annotation_table(cfg.annotations_path)
    specs = plan_shards(table, cfg, ledger, "")
    if not on:
        return {s.name: CAPTIONS_OFF for s in specs}
    from tasks.captions.stage import model_identity

    ready = [s for s in specs if is_ready(s, ledger)]
    ident = model_identity(cfg)
    extras, todo = caption_extras(cfg, ready, ledger, table, ident)
    if not todo:
        logger.info("captions: all %d parts current", len(ready))
        return extras
    logger.info("captions: %d of %d parts to compute (%s, %s)", len(todo), len(ready), ident[2],
                cfg.runner.kind)
    by_image = phrases_by_image(table)
    artifact = create_progress_artifact(0.0, key=artifact_key("captions", cfg.name),
                                        description=f"{len(todo)} caption parts")
    jobs = [{"cfg": cfg, "split": s.split, "index": s.index, "image_ids": list(s.image_ids),
             "ledger": {i: ledger[i] for i in s.image_ids if i in ledger},
             "phrases": part_phrases(by_image, s.image_ids), "token": token} for s in todo]
    if cfg.runner.kind == "dask":
        import dask

        with make_task_runner(cfg.runner) as runner:
            with dask.annotate(resources={cfg.runner.gpu_resource: 1}):
                futures = [runner.submit(caption_part_task, parameters=job) for job in jobs]
            results = [f.result() for f in futures]
    else:
        results = []
        for n, job in enumerate(jobs, 1):
            results.append(caption_part_task(**job))
            update_progress_artifact(artifact, 100.0 * n / len(jobs))
    for spec, result in zip(todo, results):
        logger.info("captions %s-%05d: %s, phrases %s (%d images, %d skipped)", spec.split, spec.index,
                    result["captions"], result["phrases"], result["captions_marker"]["rows"],
                    sum(result["captions_marker"]["skips"].values()))
    extras, todo = caption_extras(cfg, ready, ledger, table, ident)
    return extras
