"""Image acquisition into ``OUT/images/<image_id>.jpg``, with a ledger row per image.
(The Prefect stage around it is ``tasks/acquisition.py``; this module imports no Prefect,
so worker processes start quickly.)

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

import hashlib
import io
import multiprocessing
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable

from PIL import Image

from schemas.records import LedgerRow
from tasks.acquire import ledger as L
from tasks.acquire.http_fetch import backoff_delay, discard_partial, settings_for
from tasks.acquire.image_sources import DirSource, HttpSource, ZipSource
from tasks.acquire.ledger import LedgerWriter
from tasks.core.files import sha256_file

PARTIAL_DIR = "_partial"
EXIF_ORIENTATION = 0x0112
Progress = Callable[[int, Counter], None]


def image_path(images_dir: Path, image_id: int) -> Path:
    # Built from the integer id only: a record can never choose where we write.
    return images_dir / f"{int(image_id)}.jpg"


def verify_image(src: Path | bytes, expected: tuple[int, int], max_pixels: int) -> dict[str, Any]:
    """Decode fully; report status, actual size and whether it matches the annotation.

    The pixel count is checked from the header, before decoding (decompression bombs).
    JPEGs decode in libjpeg's DCT-scaled mode (1/8 size): every coefficient of every
    scan is still entropy-decoded, so truncation and corruption are caught, at about
    half the cost of a full-size decode. An EXIF orientation is recorded, never applied
    (the polygons are in stored-pixel coordinates)."""
    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            w, h = im.size
            if w * h > max_pixels:
                return {"status": L.TOO_LARGE, "error": f"{w}x{h} exceeds {max_pixels} pixels"}
            orientation = im.getexif().get(EXIF_ORIENTATION)
            if im.format == "JPEG":
                im.draft("RGB", (max(1, w // 8), max(1, h // 8)))
            im.load()
    except Image.DecompressionBombError as exc:  # past PIL's own limit, before ours
        return {"status": L.TOO_LARGE, "error": str(exc)[:300]}
    except Exception as exc:  # PIL raises many types for bad bytes
        return {"status": L.CORRUPT, "error": f"{type(exc).__name__}: {exc}"[:300]}
    row = {"status": L.OK, "actual_width": w, "actual_height": h,
           "size_mismatch": (w, h) != tuple(expected)}
    if orientation not in (None, 1):
        row["exif_orientation"] = int(orientation)
    return row


def needs_work(rec: dict[str, Any], prev: LedgerRow | None, images_dir: Path, source,
               retry_failed: bool) -> str | None:
    """None when the record's image is to be (re)acquired, else the count it goes under
    (``already_ok``, ``already_failed``, ...). A local folder or zip says when its copy
    of a photo changed (``fingerprint``): that photo is acquired again."""
    dest = image_path(images_dir, rec["image_id"])
    if prev is None:
        return None
    if prev["status"] == L.OK:
        if not (dest.exists() and dest.stat().st_size == prev.get("bytes")):
            return None  # deleted or damaged since: acquire again
        if source.fingerprint(rec) != prev.get("source_fingerprint"):
            return None  # the source's copy changed
        return "already_ok"
    if prev["status"] == L.RETRY or dest.exists():
        return None
    # A local folder or zip is cheap to look at again (the file may have arrived);
    # a server that said 404 is not asked again unless the user says so.
    if source.name != "http" or retry_failed:
        return None
    return f"already_{prev['status']}"


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
        return needs_work(rec, prev, self.images_dir, self.source, self.policy.retry_failed)

    # -- one image (runs in a worker thread) ---------------------------------------------
    def acquire_one(self, rec: dict[str, Any], prev: LedgerRow | None) -> LedgerRow:
        image_id = int(rec["image_id"])
        dest = image_path(self.images_dir, image_id)
        base_attempts = (prev or {}).get("attempts", 0) if (prev or {}).get("status") == L.RETRY else 0
        row: dict[str, Any] = {"image_id": image_id, "source": self.source.name}
        if "url" in rec:
            row["url"] = rec["url"]
        expected = (rec["width"], rec["height"])
        part = self.partial_dir / f"{image_id}.part"
        for path in (dest, part):  # a link planted there is not ours: never follow it
            if path.is_symlink():
                path.unlink()
        fingerprint = self.source.fingerprint(rec)
        if fingerprint is not None:
            row["source_fingerprint"] = fingerprint
            dest.unlink(missing_ok=True)  # a local copy is cheap to take again, and current
        if dest.exists():  # renamed into place by a run killed before its ledger row
            checked = verify_image(dest, expected, self.policy.max_pixels)
            if checked["status"] == L.OK:
                return self._ok(row, dest, checked, attempts=base_attempts, found=True)
            dest.unlink()
        outcome = None
        for n in range(1, self.policy.attempts_per_run + 1):
            outcome = self.source.fetch(rec, part)
            attempts = base_attempts + n
            row.update(attempts=attempts, http_status=outcome.http_status)
            if outcome.kind == "ok":
                body = outcome.body
                checked = verify_image(part if body is None else body, expected, self.policy.max_pixels)
                if checked["status"] != L.OK:
                    discard_partial(part)
                    return {**row, **checked, "time": time.time()}
                part.replace(dest)
                discard_partial(part)  # the .json beside it
                row["resumed_from"] = outcome.resumed_from
                return self._ok(row, dest, checked, attempts, body=body)
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
        return backoff_delay(attempts, self.policy.backoff_base, self.policy.backoff_max)

    @staticmethod
    def _ok(row, dest: Path, checked, attempts: int, found: bool = False,
            body: bytes | None = None) -> LedgerRow:
        digest = hashlib.sha256(body).hexdigest() if body is not None else sha256_file(dest)
        size = len(body) if body is not None else dest.stat().st_size
        row.update(checked, attempts=attempts, bytes=size, sha256=digest, time=time.time())
        if found:
            row["note"] = "verified a file left by an interrupted run"
        return row

    # -- the run ----------------------------------------------------------------------------
    def run(self, records: Iterable[dict[str, Any]], cfg=None) -> Counter:
        """Acquire every record's image; return counts (statuses and already_*).

        Work goes out in batches: one record at a time to the thread pool, or, with
        ``images.processes`` > 1 (HTTP only, ``cfg`` given), batches to worker processes
        that each run their own threads, so decoding for verification uses more than one
        core. The ledger is written here only, in completion order."""
        self.counts: Counter = Counter()
        self.done = 0
        previous = L.read_and_compact(self.images_dir)
        pool, run_batch, batch_size, max_inflight = self._executor(cfg)
        with LedgerWriter(self.images_dir) as writer, pool:
            try:
                inflight: set = set()
                batch: list = []
                for rec in records:
                    prev = previous.get(int(rec["image_id"]))
                    if not self._needs_fetch(rec, prev, writer):
                        continue
                    batch.append((rec, prev))
                    if len(batch) >= batch_size:
                        inflight.add(pool.submit(run_batch, batch))
                        batch = []
                    if len(inflight) >= max_inflight:
                        finished, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                        self._settle(finished, writer)
                if batch:
                    inflight.add(pool.submit(run_batch, batch))
                self._settle(inflight, writer)
            except BaseException:
                # Ctrl-C or an error: start nothing new; what is in flight finishes
                # (bounded by the timeouts) and the ledger keeps what completed.
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        self._report()
        return self.counts

    def _executor(self, cfg):
        """(pool, batch function, batch size, most batches in flight)."""
        http = self.source.name == "http"
        workers = self.policy.workers if http else min(4, self.policy.workers)
        processes = self.policy.processes if http and cfg is not None else 1
        if processes == 1:
            return ThreadPoolExecutor(workers), self.run_batch, 1, 2 * workers
        threads = max(1, workers // processes)
        pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_process_init, initargs=(cfg, threads, processes))
        return pool, _process_batch, 2 * threads, 2 * processes

    def _needs_fetch(self, rec: dict[str, Any], prev: LedgerRow | None, writer) -> bool:
        """False (counted, and for a bad record written down once) when there is
        nothing to fetch for ``rec``."""
        problem = getattr(self.source, "record_problem", lambda r: None)(rec)
        if problem:
            if not prev or prev.get("status") != L.INVALID or prev.get("error") != problem:
                writer.append({"image_id": int(rec["image_id"]), "status": L.INVALID,
                               "error": problem, "source": self.source.name, "time": time.time()})
            skip = L.INVALID
        else:
            skip = self.needs_work(rec, prev)
        if skip:
            self.counts[skip] += 1
            self.done += 1
            self._report()
        return not skip

    def _settle(self, futures, writer) -> None:
        for fut in futures:
            for row in fut.result():
                writer.append(row)
                self.counts[row["status"]] += 1
                self.done += 1
            self._report()

    def run_batch(self, batch: list[tuple[dict[str, Any], LedgerRow | None]]) -> list[LedgerRow]:
        return [self.acquire_one(rec, prev) for rec, prev in batch]

    def _report(self) -> None:
        if self.progress:
            self.progress(self.done, self.counts)


# -- worker processes (images.processes > 1) ----------------------------------------------
_PROCESS: tuple[Acquirer, ThreadPoolExecutor] | None = None


def _process_init(cfg, threads: int, processes: int) -> None:
    """Per worker process: its own source and threads; the per-host rate is split
    between the processes so that together they keep to the configured one."""
    global _PROCESS
    http = cfg.images.http.model_copy(update={"per_host_rate": cfg.images.http.per_host_rate / processes})
    images = cfg.images.model_copy(update={"http": http, "workers": threads})
    acquirer = Acquirer(make_source(cfg.model_copy(update={"images": images})), cfg.images_dir, images)
    _PROCESS = (acquirer, ThreadPoolExecutor(threads))


def _process_batch(batch) -> list[LedgerRow]:
    acquirer, threads = _PROCESS
    return list(threads.map(lambda job: acquirer.acquire_one(*job), batch))


def make_source(cfg):
    images = cfg.images
    if images.source == "sample":
        from tasks.acquire.sample_photos import materialize

        src = cfg.out_dir / "sources" / "sample_photos"
        materialize(src)
        return DirSource(src)
    if images.source == "local":
        return DirSource(Path(images.dir))
    if images.source == "zip":
        return ZipSource(tuple(images.zips))
    return HttpSource(settings_for(images))


def acquire_records(cfg, records: Iterable[dict[str, Any]], progress: Progress | None = None) -> Counter:
    source = make_source(cfg)
    try:
        return Acquirer(source, cfg.images_dir, cfg.images, progress).run(records, cfg)
    finally:
        source.close()
