"""Caption parts follow the shard plan: one part per shard, over the same images, so a
shard joins exactly one captions part and one phrase-embeddings part, and its inputs
digest names theirs (a recaptioned image rebuilds exactly its shard)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

CAPTIONS_OFF = "captions-off"


def phrases_by_image(table: pa.Table) -> dict[int, list[tuple[str, str]]]:
    out: dict[int, list[tuple[str, str]]] = {}
    for image_id, task_id, phrase in zip(table["image_id"].to_pylist(), table["task_id"].to_pylist(),
                                         table["phrase"].to_pylist()):
        out.setdefault(image_id, []).append((task_id, phrase))
    return out


def part_phrases(by_image: dict[int, list[tuple[str, str]]], image_ids) -> list[tuple[str, str]]:
    return [p for i in image_ids for p in by_image.get(i, [])]


def caption_extras(cfg, specs, ledger, table: pa.Table, ident) -> tuple[dict[str, str], list[Any]]:
    """({shard name: the sha256s of its current captions and phrase parts}, the specs
    whose parts must be computed first)."""
    from tasks.captions.stage import current_parts

    by_image = phrases_by_image(table)
    extras, todo = {}, []
    for spec in specs:
        _, cap, phr = current_parts(cfg, ident, spec.split, spec.index, spec.image_ids, ledger,
                                    part_phrases(by_image, spec.image_ids))
        if cap is None or cap.get("stale") or phr is None:
            todo.append(spec)
        else:
            extras[spec.name] = f"{cap['sha256']}|{phr['sha256']}"
    return extras, todo
