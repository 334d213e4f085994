"""Fetch the official annotation files that are not in ``annotations.dir`` yet.

Sources come from the config (``annotations.sources``): a Google Drive file id, fetched
with gdown as the official ``download_dataset.py`` does, or a plain URL, fetched with our
resumable HTTP client. A file lands under its final name only after its sha256 matched
(when one is configured), so a half-downloaded file is never taken for the real one.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from schemas.errors import UserError
from tasks.acquire.http_fetch import HttpFetcher, backoff_delay, discard_partial, settings_for
from tasks.core.files import sha256_file

log = logging.getLogger(__name__)


class FetchError(UserError, RuntimeError):
    """An annotation file could not be fetched or did not match its sha256."""


def ensure_files(ann, names: list[str], images_policy) -> dict[str, str]:
    """Make sure every file of ``names`` is in ``ann.dir`` (fetching what is missing and
    has a source); return name -> sha256."""
    ann_dir = Path(ann.dir)
    hashes = {}
    for name in names:
        path = ann_dir / name
        source = ann.sources.get(name)
        if not path.is_file():
            if source is None:
                raise FileNotFoundError(f"{path}: file not found (annotations.dir), and "
                                        f"annotations.sources has no entry for {name}")
            ann_dir.mkdir(parents=True, exist_ok=True)
            fetch_file(source, path, ann.gdrive_url, images_policy)
        digest = sha256_file(path)
        if source is not None and source.sha256 and digest != source.sha256:
            raise FetchError(f"{path}: sha256 {digest} differs from the configured "
                             f"{source.sha256}; delete the file to fetch it again")
        hashes[name] = digest
    return hashes


def fetch_file(source, path: Path, gdrive_url: str, policy) -> None:
    part = path.with_name(f".{path.name}.part")
    if source.gdrive_id is not None:
        _fetch_gdrive(gdrive_url.format(id=source.gdrive_id), part)
    else:
        _fetch_url(source.url, part, policy)
    digest = sha256_file(part)
    if source.sha256 and digest != source.sha256:
        discard_partial(part)
        raise FetchError(f"{path.name}: downloaded bytes have sha256 {digest}, expected "
                         f"{source.sha256} (source {source.gdrive_id or source.url})")
    part.replace(path)
    discard_partial(part)
    log.info("fetched %s (%d bytes, sha256 %s)", path, path.stat().st_size, digest)


def _fetch_gdrive(url: str, part: Path) -> None:
    import gdown

    try:
        out = gdown.download(url=url, output=str(part), quiet=True, resume=True)
    except Exception as exc:  # gdown raises its own and requests' errors
        raise FetchError(f"{url}: Google Drive download failed: {exc}") from exc
    if out is None or not part.is_file():
        raise FetchError(f"{url}: Google Drive download produced no file")


def _fetch_url(url: str, part: Path, policy) -> None:
    # Annotation files are hundreds of MB (no image size cap) and JSON (not refused).
    fetcher = HttpFetcher(settings_for(policy, workers=1, max_bytes=2**40, reject_types=("text/html",)))
    try:
        for attempt in range(1, policy.attempts_per_run + 1):
            outcome = fetcher.fetch(url, part)
            if outcome.kind == "ok":
                return
            if outcome.kind == "permanent" or attempt == policy.attempts_per_run:
                raise FetchError(f"{url}: {outcome.error} (after {attempt} attempts)")
            if outcome.retry_after is None:
                time.sleep(backoff_delay(attempt, policy.backoff_base, policy.backoff_max))
    finally:
        fetcher.close()
