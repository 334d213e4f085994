"""Stage: image acquisition into ``OUT/images/<image_id>.jpg``, with a ledger row per image.

A bounded thread pool works through the records (never all of them in flight: a 77k
list costs the records, not 77k futures). Per image: fetch from the source into
``images/_partial/<id>.part`` (resumable for HTTP), verify that it decodes fully and
compare its size with the annotation, then rename into place and append the ledger row.
A file is only ever in ``images/`` after it verified, so after a kill at any moment the
next run trusts what is there (re-verifying it if its ledger row was lost) and resumes
the partials: no complete file is fetched twice.

Transient failures back off exponentially with full jitter (``Retry-After`` is honoured
by the fetcher's per-host pacer); after ``attempts_per_run`` the image waits for the next
run, after ``give_up_after`` attempts in all it has failed for good.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable

from PIL import Image
from prefect import task as prefect_task
from prefect.cache_policies import NO_CACHE

from schemas.records import LedgerRow
from tasks import ledger as L
from tasks.files import sha256_file
from tasks.http_fetch import FetchSettings, discard_partial
from tasks.image_sources import DirSource, HttpSource, ZipSource
from tasks.ledger import LedgerWriter, read_ledger

__all__ = ["acquire", "acquire_records", "acquire_task", "image_path", "read_ledger",
           "verify_image", "SETTLED_OK"]

SETTLED_OK = L.OK
PARTIAL_DIR = "_partial"
Progress = Callable[[int, Counter], None]


def image_path(images_dir: Path, image_id: int) -> Path:
    # Built from the integer id only: a record can never choose where we write.
    return images_dir / f"{int(image_id)}.jpg"


def verify_image(path: Path, expected: tuple[int, int], max_pixels: int) -> dict[str, Any]:
    """Decode fully; report status, actual size and whether it matches the annotation.
    The pixel count is checked from the header, before decoding (decompression bombs)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                return {"status": L.TOO_LARGE, "error": f"{w}x{h} exceeds {max_pixels} pixels"}
            im.load()
    except Exception as exc:  # PIL raises many types for bad bytes
        return {"status": L.CORRUPT, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"status": L.OK, "actual_width": w, "actual_height": h,
            "size_mismatch": (w, h) != tuple(expected)}


class Acquirer:
    """One run over a record list with one source. ``policy`` is ``cfg.images``."""

    def __init__(self, source, images_dir: Path, policy, progress: Progress | None = None):
        self.source = source
        self.images_dir = images_dir
        self.partial_dir = images_dir / PARTIAL_DIR
        self.policy = policy
        self.progress = progress
        self.partial_dir.mkdir(parents=True, exist_ok=True)

    # -- deciding what to do ------------------------------------------------------------
    def needs_work(self, rec: dict[str, Any], prev: LedgerRow | None) -> str | None:
        """None to (re)acquire the image, else the count it goes under."""
        dest = image_path(self.images_dir, rec["image_id"])
        if prev is None:
            return None
        if prev["status"] == L.OK:
            if dest.exists() and dest.stat().st_size == prev.get("bytes"):
                return "already_ok"
            return None  # deleted or damaged since: acquire again
        if prev["status"] == L.RETRY or dest.exists():
            return None
        # A local folder or zip is cheap to look at again (the file may have arrived);
        # a server that said 404 is not asked again unless the user says so.
        if self.source.name != "http" or self.policy.retry_failed:
            return None
        return f"already_{prev['status']}"

    # -- one image (runs in a worker thread) ---------------------------------------------
    def acquire_one(self, rec: dict[str, Any], prev: LedgerRow | None) -> LedgerRow:
        image_id = int(rec["image_id"])
        dest = image_path(self.images_dir, image_id)
        base_attempts = (prev or {}).get("attempts", 0) if (prev or {}).get("status") == L.RETRY else 0
        row: dict[str, Any] = {"image_id": image_id, "source": self.source.name}
        if "url" in rec:
            row["url"] = rec["url"]
        expected = (rec["width"], rec["height"])
        if dest.exists():  # renamed into place by a run killed before its ledger row
            checked = verify_image(dest, expected, self.policy.max_pixels)
            if checked["status"] == L.OK:
                return self._ok(row, dest, checked, attempts=base_attempts, found=True)
            dest.unlink()
        part = self.partial_dir / f"{image_id}.part"
        outcome = None
        for n in range(1, self.policy.attempts_per_run + 1):
            outcome = self.source.fetch(rec, part)
            attempts = base_attempts + n
            row.update(attempts=attempts, http_status=outcome.http_status)
            if outcome.kind == "ok":
                checked = verify_image(part, expected, self.policy.max_pixels)
                if checked["status"] != L.OK:
                    discard_partial(part)
                    return {**row, **checked, "time": time.time()}
                part.replace(dest)
                discard_partial(part)  # the .json beside it
                row["resumed_from"] = outcome.resumed_from
                return self._ok(row, dest, checked, attempts)
            if outcome.kind != "transient":
                status = {"permanent": L.FAILED}.get(outcome.kind, outcome.kind)
                return {**row, "status": status, "error": outcome.error, "time": time.time()}
            if attempts >= self.policy.give_up_after:
                break
            if n < self.policy.attempts_per_run and outcome.retry_after is None:
                time.sleep(self.backoff(attempts))
        gave_up = row["attempts"] >= self.policy.give_up_after
        return {**row, "status": L.FAILED if gave_up else L.RETRY, "time": time.time(),
                "error": outcome.error + (" (gave up)" if gave_up else "")}

    def backoff(self, attempts: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(attempts-1))]."""
        cap = min(self.policy.backoff_max, self.policy.backoff_base * 2 ** (attempts - 1))
        return random.uniform(0, cap)

    @staticmethod
    def _ok(row, dest: Path, checked, attempts: int, found: bool = False) -> LedgerRow:
        row.update(checked, attempts=attempts, bytes=dest.stat().st_size,
                   sha256=sha256_file(dest), time=time.time())
        if found:
            row["note"] = "verified a file left by an interrupted run"
        return row

    # -- the run ----------------------------------------------------------------------------
    def run(self, records: Iterable[dict[str, Any]]) -> Counter:
        """Acquire every record's image; return counts (statuses and already_*)."""
        previous = read_ledger(self.images_dir)
        counts: Counter = Counter()
        done = 0
        workers = self.policy.workers if self.source.name == "http" else min(4, self.policy.workers)

        def settle(futures) -> None:
            nonlocal done
            for fut in futures:
                row = fut.result()
                writer.append(row)
                counts[row["status"]] += 1
                done += 1
                self._report(done, counts)

        L.compact(self.images_dir)
        with LedgerWriter(self.images_dir) as writer, ThreadPoolExecutor(workers) as pool:
            inflight: set = set()
            for rec in records:
                prev = previous.get(int(rec["image_id"]))
                problem = getattr(self.source, "record_problem", lambda r: None)(rec)
                if problem:
                    counts[L.INVALID] += 1
                    done += 1
                    if not prev or prev.get("status") != L.INVALID or prev.get("error") != problem:
                        writer.append({"image_id": int(rec["image_id"]), "status": L.INVALID,
                                       "error": problem, "source": self.source.name,
                                       "time": time.time()})
                    continue
                skip = self.needs_work(rec, prev)
                if skip:
                    counts[skip] += 1
                    done += 1
                    self._report(done, counts)
                    continue
                inflight.add(pool.submit(self.acquire_one, rec, prev))
                if len(inflight) >= 2 * workers:
                    finished, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                    settle(finished)
            settle(inflight)
        self._report(done, counts)
        return counts

    def _report(self, done: int, counts: Counter) -> None:
        if self.progress:
            self.progress(done, counts)


def make_source(cfg):
    images = cfg.images
    if images.source == "sample":
        from tasks.sample_photos import materialize

        src = cfg.out_dir / "sources" / "sample_photos"
        materialize(src)
        return DirSource(src)
    if images.source == "local":
        return DirSource(Path(images.dir))
    if images.source == "zip":
        return ZipSource(tuple(images.zips))
    return HttpSource(fetch_settings(images))


def fetch_settings(images) -> FetchSettings:
    h = images.http
    return FetchSettings(workers=images.workers, per_host_rate=h.per_host_rate,
                         connect_timeout=h.connect_timeout, read_timeout=h.read_timeout,
                         max_bytes=h.max_bytes, max_redirects=h.max_redirects,
                         max_retry_after=h.max_retry_after, user_agent=h.user_agent)


def acquire_records(cfg, records: Iterable[dict[str, Any]], progress: Progress | None = None) -> Counter:
    source = make_source(cfg)
    try:
        return Acquirer(source, cfg.images_dir, cfg.images, progress).run(records)
    finally:
        source.close()


def acquire(cfg, records: list[dict[str, Any]]) -> Counter:
    """The flow's stage: acquire, with a Prefect progress artifact updated every ~2 s."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    total = max(len(records), 1)
    artifact = create_progress_artifact(0.0, description=f"acquire {len(records)} images")
    last = [0.0]

    def progress(done: int, counts: Counter) -> None:
        now = time.monotonic()
        if now - last[0] > 2.0 or done == total:
            last[0] = now
            update_progress_artifact(artifact, 100.0 * done / total,
                                     description=_summary(done, total, counts))

    return acquire_records(cfg, records, progress)


def _summary(done: int, total: int, counts: Counter) -> str:
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    return f"{done}/{total} images: {parts}"


# Resume is decided by the ledger, not Prefect's cache.
acquire_task = prefect_task(name="acquire-images", cache_policy=NO_CACHE, persist_result=False)(acquire)
