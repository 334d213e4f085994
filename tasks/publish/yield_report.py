"""How many rows a build makes per phrase, where the others went, and what the full
VGPhraseCut build will make: measured, not assumed.

From a build's shard markers (or its manifest): phrases in (every task of the built
images), phrases skipped before any draw (by reason: stuff phrases, box masks, masks the
photo shows no outline for, unreadable photos, ...), samples drawn (the drawn phrases x
``composites_per_task``), samples lost after ``max_attempts`` (by recipe and the judge's
last reason), rows out (by recipe). The counts add up: phrases in = skipped + drawn,
samples drawn = rows + lost. ``projection`` scales rows per phrase (and bytes and
synthesis seconds per row, when measured) to VGPhraseCut's 345,486 phrases.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

# VGPhraseCut v0's phrases per split (ANCHORS.md).
VGPHRASECUT_PHRASES = {"train": 310_816, "val": 20_316, "test": 14_354}
# Measured yields, one entry per synthesis settings (bench/yield.py writes it).
MEASURED = Path(__file__).resolve().parents[2] / "configs" / "measured_yield.json"


def settings_digest(cfg) -> str:
    """What decides rows per phrase: the synthesis, mask and look settings."""
    data = {"synthesis": cfg.synthesis.model_dump(mode="json"), "masks": cfg.masks.model_dump(mode="json"),
            "luts": cfg.luts.model_dump(mode="json", exclude={"user_dirs"}), "seed": cfg.seed}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def yield_of(markers: list[dict[str, Any]], composites_per_task: int) -> dict[str, Any]:
    """The yield of a build from its shard markers (or the manifest's merged counts)."""
    notes: Counter = Counter()
    skips: Counter = Counter()
    phrases_in = rows = 0
    for m in markers:
        notes.update(m.get("notes", {}))
        skips.update(m.get("skips", {}).get("counts", {}))
        phrases_in += m.get("tasks", 0)
        rows += m.get("rows", 0)
    drawn = notes.get("drawn_phrases", 0)
    lost = {k.removeprefix("lost:"): v for k, v in notes.items() if k.startswith("lost:")}
    lost_reasons = Counter()
    lost_by_recipe = Counter()
    for key, n in lost.items():
        recipe, _, reason = key.partition(":")
        lost_reasons[reason] += n
        lost_by_recipe[recipe] += n
    # Skips count lost samples too (by sample id): what is left are the phrases skipped.
    skipped = {r: n - lost_reasons.get(r, 0) for r, n in skips.items() if n > lost_reasons.get(r, 0)}
    made = {k.removeprefix("made:"): v for k, v in notes.items() if k.startswith("made:")}
    return {
        "phrases_in": phrases_in,
        "phrases_skipped": dict(sorted(skipped.items())),
        "phrases_drawn": drawn,
        "samples_drawn": drawn * composites_per_task,
        "samples_lost": dict(sorted(lost_reasons.items())),
        "samples_lost_by_recipe": dict(sorted(lost_by_recipe.items())),
        "rows": rows,
        "rows_by_recipe": dict(sorted(made.items())),
        "rows_per_phrase": rows / phrases_in if phrases_in else 0.0,
    }


def check(report: dict[str, Any]) -> list[str]:
    """The identities a yield report must satisfy; the broken ones, in words."""
    problems = []
    if report["phrases_in"] != sum(report["phrases_skipped"].values()) + report["phrases_drawn"]:
        problems.append("phrases in != skipped + drawn")
    if report["samples_drawn"] != report["rows"] + sum(report["samples_lost"].values()):
        problems.append("samples drawn != rows + lost")
    if report["rows"] != sum(report["rows_by_recipe"].values()):
        problems.append("rows != the sum over recipes")
    return problems


def projection(rows_per_phrase: float, phrases: dict[str, int], bytes_per_row: float | None = None,
               seconds_per_row: float | None = None) -> dict[str, Any]:
    """Rows (by split), GB and core-hours of synthesis for ``phrases`` phrases per split."""
    by_split = {split: round(n * rows_per_phrase) for split, n in phrases.items()}
    rows = sum(by_split.values())
    out: dict[str, Any] = {"phrases": sum(phrases.values()), "rows": rows, "rows_by_split": by_split,
                           "rows_per_phrase": rows_per_phrase}
    if bytes_per_row:
        out["gb"] = rows * bytes_per_row / 1e9
    if seconds_per_row:
        out["core_hours"] = rows * seconds_per_row / 3600
    return out


def measured(cfg) -> dict[str, Any] | None:
    """The measured yield for ``cfg``'s synthesis settings (``bench/yield.py``), or None."""
    if not MEASURED.exists():
        return None
    return json.loads(MEASURED.read_text()).get(settings_digest(cfg))
