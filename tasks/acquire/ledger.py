"""The image ledger: ``images/_ledger.jsonl``, one JSON line per attempt outcome.

Appending is the only write, so a kill can at most tear the last line (ignored on read);
the latest line per image wins. Rows are flushed as they come and fsynced in batches: a
row lost to a crash only costs a re-verification, because a file reaches
``images/<id>.jpg`` only after it was verified (see ``downloader``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable

# The statuses live beside the row's format; every caller reads them from here too.
from schemas.records import (  # noqa: F401
    CORRUPT,
    FAILED,
    INVALID,
    MISSING,
    OK,
    RETRY,
    SETTLED,
    STATUSES,
    TOO_LARGE,
    LedgerRow,
)

LEDGER_NAME = "_ledger.jsonl"
log = logging.getLogger("phraseharmony.ledger")
# Fsync at least this often while appending (a crash loses at most this much work).
FSYNC_EVERY_S = 1.0


def read_ledger(images_dir: Path) -> dict[int, LedgerRow]:
    """image_id -> latest row. Rows about records without a usable id are not included."""
    rows: dict[int, LedgerRow] = {}
    for row in _lines(images_dir / LEDGER_NAME):
        if isinstance(row.get("image_id"), int):
            rows[row["image_id"]] = row
    return rows


def invalid_records(images_dir: Path) -> dict[str, LedgerRow]:
    """``record`` ("file[index]") -> row, for records rejected before any image id."""
    return {row["record"]: row for row in _lines(images_dir / LEDGER_NAME)
            if row.get("status") == INVALID and "record" in row}


def _lines(path: Path) -> Iterable[dict[str, Any]]:
    """The ledger's rows. A line torn by a kill is skipped silently (it is expected);
    a whole line that is not a row with a known status is skipped and named in the log:
    its image counts as never acquired, so the next run verifies or fetches it again."""
    if not path.exists():
        return
    damaged = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except ValueError:
                if line.endswith("\n") and line.strip():
                    damaged.append(number)
                continue  # else: torn by a kill mid-write
            if isinstance(row, dict) and row.get("status") in STATUSES:
                yield row
            else:
                damaged.append(number)
    if damaged:
        log.warning("%s: %d damaged row(s) ignored (line %s%s); those images are checked again",
                    path, len(damaged), ", ".join(map(str, damaged[:5])),
                    ", ..." if len(damaged) > 5 else "")


class LedgerWriter:
    """Appends rows; ``with`` closes (and fsyncs) it. One writer per output folder: the
    folder lock (``files.exclusive``) keeps builds and downloads apart, and a run
    appends from one thread."""

    def __init__(self, images_dir: Path):
        images_dir.mkdir(parents=True, exist_ok=True)
        self.path = images_dir / LEDGER_NAME
        _repair_tail(self.path)
        self._f = open(self.path, "a", encoding="utf-8")
        self._synced = time.monotonic()

    def append(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, sort_keys=True) + "\n")
        self._f.flush()
        if time.monotonic() - self._synced > FSYNC_EVERY_S:
            self.sync()

    def sync(self) -> None:
        os.fsync(self._f.fileno())
        self._synced = time.monotonic()

    def close(self) -> None:
        if not self._f.closed:
            self.sync()
            self._f.close()

    def __enter__(self) -> "LedgerWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _repair_tail(path: Path) -> None:
    """Drop a last line torn by a kill (its row is lost; that image is checked again),
    so the next row starts on a line of its own."""
    size = path.stat().st_size if path.exists() else 0
    if not size:
        return
    with open(path, "rb+") as f:
        start = max(0, size - (1 << 16))
        f.seek(start)
        tail = f.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        f.truncate(start + cut + 1 if cut >= 0 else (0 if start == 0 else size))
        if cut < 0 and start:
            f.write(b"\n")  # a torn line over 64 KiB: end it instead


def read_and_compact(images_dir: Path) -> dict[int, LedgerRow]:
    """Read the ledger once: rewrite it with only the latest row per image (and per
    invalid record) when attempts have made it more than twice that long (atomic: temp
    file + rename), and return the latest row per image, as ``read_ledger`` does."""
    path = images_dir / LEDGER_NAME
    latest: dict[Any, dict[str, Any]] = {}
    lines = 0
    for row in _lines(path):
        lines += 1
        key = row.get("image_id") if isinstance(row.get("image_id"), int) else row.get("record")
        latest[key] = row
    if lines > 2 * max(len(latest), 1):
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for row in latest.values():
                f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    return {k: v for k, v in latest.items() if isinstance(k, int)}
