"""HTTP GET of one file into a partial file, resumable, for image and annotation downloads.

One ``HttpFetcher`` is shared by all download threads: a urllib3 pool (keep-alive, at
most ``workers`` connections per host), a per-host pacer (rate limit, and the pauses
that 429/503 ``Retry-After`` ask for), and a size cap. ``fetch`` makes one attempt and
classifies the outcome; retries and backoff belong to the caller, which knows how many
attempts an image has had.

Resume: the bytes received so far live in ``<part>``; ``<part>.json`` holds the URL and
the validator (ETag, else Last-Modified) of the response they came from. The next
attempt asks for ``Range: bytes=<size>-`` with ``If-Range: <validator>``; a 206 that
starts at our size is appended, a 200 (server ignores Range, or the file changed) starts
over. Every byte in ``<part>`` is a prefix of one response, so a kill at any moment leaves
a resumable file.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from tasks.core.files import open_nofollow

CHUNK = 1 << 16
# Bodies up to this size are also handed back in memory (images are far smaller).
KEEP_BODY = 64 * 2**20
# Unread error bodies up to this size are drained to keep the connection alive.
DRAIN_LIMIT = 1 << 16
REDIRECTS = (301, 302, 303, 307, 308)
# Retrying these cannot help: the resource is gone, forbidden or the request is wrong.
PERMANENT_STATUS = {400, 401, 403, 404, 405, 406, 410, 411, 414, 451, 501}
# These ask us to come back later; Retry-After says when.
THROTTLE_STATUS = {429, 503}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class FetchSettings:
    workers: int = 16
    per_host_rate: float = 10.0
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_bytes: int = 30 * 2**20
    max_redirects: int = 5
    max_retry_after: float = 600.0
    user_agent: str = "phraseharmony-downloader/0.1"
    # Content types that are never an image (an error page served with 200).
    reject_types: tuple[str, ...] = ("text/", "application/json", "application/xml")


def settings_for(images, **changes) -> FetchSettings:
    """FetchSettings from the run config's ``images`` section (``changes`` on top)."""
    h = images.http
    return FetchSettings(**{**dict(
        workers=images.workers, per_host_rate=h.per_host_rate, connect_timeout=h.connect_timeout,
        read_timeout=h.read_timeout, max_bytes=h.max_bytes, max_redirects=h.max_redirects,
        max_retry_after=h.max_retry_after, user_agent=h.user_agent), **changes})


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^(attempts-1))]."""
    return random.uniform(0, min(cap, base * 2 ** (attempts - 1)))


@dataclass
class FetchOutcome:
    """One attempt. ``kind``: ok (the part file is the whole body), transient (try again
    later; the part file is kept for resume), permanent (do not retry)."""
    kind: str
    error: str = ""
    http_status: int | None = None
    resumed_from: int = 0      # bytes already in the part file when it started
    retry_after: float | None = None
    body: bytes | None = None  # the whole file (also in the part file) when this attempt
                               # fetched all of it: verified and hashed from memory


def check_scheme(url: str) -> str | None:
    """None for an http(s) URL with a host, else why it is refused."""
    if not isinstance(url, str) or not url:
        return "no url"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme or '(none)'!r} not allowed (http/https only)"
    if not parts.hostname:
        return "url has no host"
    return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


class HostPacer:
    """Spaces request starts to one host at least ``1/rate`` apart; ``pause`` pushes the
    host's next start back (Retry-After). Shared by all threads."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, host: str) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next.get(host, now))
            self._next[host] = start + self.interval
        if start > now:
            time.sleep(start - now)

    def pause(self, host: str, seconds: float) -> None:
        with self._lock:
            self._next[host] = max(self._next.get(host, 0.0), time.monotonic() + seconds)


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def discard_partial(part: Path) -> None:
    part.unlink(missing_ok=True)
    _meta_path(part).unlink(missing_ok=True)


def _write_meta(part: Path, meta: dict) -> None:
    # Not atomic on purpose (it is written per download): a torn file fails to parse,
    # and the partial is then discarded, which only costs a refetch.
    with open_nofollow(_meta_path(part), "w") as f:
        json.dump(meta, f)


def _read_meta(part: Path) -> dict | None:
    try:
        return json.loads(_meta_path(part).read_text())
    except (OSError, ValueError):
        return None


def _validator(headers) -> str | None:
    etag = headers.get("ETag")
    # A weak ETag may not be used with If-Range (RFC 9110 13.1.5).
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


class HttpFetcher:
    def __init__(self, settings: FetchSettings = FetchSettings()):
        self.settings = settings
        self.pacer = HostPacer(settings.per_host_rate)
        self.pool = urllib3.PoolManager(
            num_pools=64, maxsize=settings.workers, block=False, retries=False,
            timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout),
            headers={"User-Agent": settings.user_agent, "Accept": "image/*,*/*;q=0.5"})

    def close(self) -> None:
        self.pool.clear()

    def partial_state(self, url: str, part: Path) -> tuple[int, dict | None]:
        """(bytes we can resume from, their metadata); stale partials are discarded."""
        if part.is_symlink() or _meta_path(part).is_symlink():
            discard_partial(part)  # not ours: never read or written through
            return 0, None
        try:
            size = part.stat().st_size
        except FileNotFoundError:
            return 0, None
        meta = _read_meta(part)
        if meta is None or meta.get("url") != url:
            discard_partial(part)
            return 0, None
        return size, meta

    def fetch(self, url: str, part: Path) -> FetchOutcome:
        """One attempt to complete ``part`` with the body of ``url``."""
        refused = check_scheme(url)
        if refused:
            return FetchOutcome("permanent", refused)
        offset, meta = self.partial_state(url, part)
        if meta and meta.get("total") is not None and offset == meta["total"]:
            # Complete before a kill, not yet verified: never fetch it again.
            return FetchOutcome("ok", resumed_from=offset)
        headers = {}
        if offset and meta and meta.get("validator"):
            headers = {"Range": f"bytes={offset}-", "If-Range": meta["validator"]}
        elif offset:
            discard_partial(part)  # no validator: the bytes cannot be trusted to match
            offset = 0
        try:
            resp, final_url = self._open(url, headers)
        except _Refused as exc:
            return FetchOutcome("permanent", str(exc))
        except Urllib3Error as exc:
            return FetchOutcome("transient", _describe(exc))
        try:
            return self._receive(resp, url, final_url, part, offset, meta)
        except Urllib3Error as exc:  # reset, timeout or short body mid-stream: keep bytes
            return FetchOutcome("transient", _describe(exc), resp.status, resumed_from=offset)
        finally:
            _drain_small(resp)
            resp.release_conn()

    def _open(self, url: str, headers: dict):
        """GET with redirects followed by hand: each hop is checked and paced."""
        for _ in range(self.settings.max_redirects + 1):
            host = urlsplit(url).hostname or ""
            self.pacer.wait(host)
            resp = self.pool.request("GET", url, headers=headers, redirect=False,
                                     preload_content=False)
            if resp.status not in REDIRECTS:
                return resp, url
            location = resp.headers.get("Location")
            _drain_small(resp)
            resp.release_conn()
            if not location:
                raise _Refused(f"HTTP {resp.status} without Location")
            url = urljoin(url, location)
            refused = check_scheme(url)
            if refused:
                raise _Refused(f"redirect to {url}: {refused}")
        raise _Refused(f"more than {self.settings.max_redirects} redirects (loop?)")

    def _receive(self, resp, asked: str, url: str, part: Path, offset: int,
                 meta: dict | None) -> FetchOutcome:
        s = self.settings
        status = resp.status
        host = urlsplit(url).hostname or ""
        if status in THROTTLE_STATUS:
            wait = parse_retry_after(resp.headers.get("Retry-After"))
            if wait is not None:
                wait = min(wait, s.max_retry_after)
                self.pacer.pause(host, wait)
            return FetchOutcome("transient", f"HTTP {status}", status, retry_after=wait,
                                resumed_from=offset)
        if status == 416 and offset:
            discard_partial(part)  # our partial is not a prefix of what is there now
            return FetchOutcome("transient", "HTTP 416 for a resume: starting over", status)
        if status in PERMANENT_STATUS:
            return FetchOutcome("permanent", f"HTTP {status}", status)
        if status not in (200, 206):
            return FetchOutcome("transient", f"HTTP {status}", status, resumed_from=offset)
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if ctype.startswith(s.reject_types):
            return FetchOutcome("permanent", f"not an image (Content-Type {ctype})", status)

        validator = _validator(resp.headers)
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        start, total = 0, length
        if status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            changed = meta is not None and validator and validator != meta.get("validator")
            if not offset or not m or int(m.group(1)) != offset or changed:
                discard_partial(part)  # a range we did not ask for, or another file
                why = "file changed between attempts" if changed else "unexpected Content-Range"
                return FetchOutcome("transient", f"{why}: starting over", status)
            start = offset
            total = int(m.group(3)) if m.group(3) != "*" else None
        # 200: the whole body, whatever we had (server ignored Range, or If-Range failed).
        if total is not None and total > s.max_bytes:
            discard_partial(part)
            return FetchOutcome("permanent", f"too large: {total} bytes > {s.max_bytes}", status)
        # Keyed by the URL asked for (the record's), not where redirects ended.
        _write_meta(part, {"url": asked, "validator": validator, "total": total})
        received = 0
        # Kept in memory too (from byte 0, up to KEEP_BODY), so the caller can verify
        # and hash without reading the file back; a 344 MB annotation file is not kept.
        chunks: list[bytes] | None = [] if start == 0 else None
        with open_nofollow(part, "r+b" if start else "wb") as f:
            f.seek(start)
            f.truncate()
            # read1 returns what has arrived (up to CHUNK): on a reset or a kill, every
            # byte that came before it is already on disk for the resume.
            while chunk := resp.read1(CHUNK):
                f.write(chunk)
                received += len(chunk)
                if start + received > s.max_bytes:
                    f.close()
                    discard_partial(part)
                    return FetchOutcome("permanent", f"too large: over {s.max_bytes} bytes", status)
                if chunks is not None:
                    chunks.append(chunk)
                    if received > KEEP_BODY:
                        chunks = None
        size = start + received
        if total is not None and size != total:
            return FetchOutcome("transient", f"truncated: {size} of {total} bytes", status,
                                resumed_from=start)
        if total is None:  # length unknown until now: record it so a kill cannot refetch
            _write_meta(part, {"url": asked, "validator": validator, "total": size})
        body = b"".join(chunks) if chunks is not None else None
        return FetchOutcome("ok", http_status=status, resumed_from=start, body=body)


def _drain_small(resp) -> None:
    """Read the rest of a small unread body (an error page) so the connection can be
    kept alive; a large or broken one is left, and urllib3 reconnects next time."""
    length = resp.headers.get("Content-Length", "")
    if length.isdigit() and int(length) <= DRAIN_LIMIT:
        try:
            resp.drain_conn()
        except Urllib3Error:
            pass


class _Refused(Exception):
    """A response chain we will not follow (bad redirect)."""


def _describe(exc: Exception) -> str:
    # urllib3 wraps the interesting error (reset, timeout, short read) one level down.
    inner = getattr(exc, "reason", None) or exc.__context__ or exc
    text = f"{type(inner).__name__}: {inner}"
    return text[:300]
