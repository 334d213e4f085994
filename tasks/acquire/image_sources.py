"""Where images come from. Each source fills a partial file for one record and says how
it went (a ``FetchOutcome``); verification and the rename into place are the caller's.

- ``DirSource``: a folder of ``<id>.jpg``, flat or under ``VG_100K``/``VG_100K_2``.
- ``ZipSource``: Visual Genome's ``images.zip``/``images2.zip``, members read one at a
  time (never extracted whole).
- ``HttpSource``: the record's ``url`` (see ``http_fetch``).
"""

from __future__ import annotations

import re
import shutil
import threading
import zipfile
from pathlib import Path
from typing import Any

from schemas.errors import UserError
from tasks.acquire.http_fetch import FetchOutcome, FetchSettings, HttpFetcher, check_scheme
from tasks.core.files import open_nofollow

VG_SUBDIRS = ("", "VG_100K", "VG_100K_2")


class SourceError(UserError, FileNotFoundError):
    """The configured image folder or zip file is missing or unreadable."""
_MEMBER = re.compile(r"(?:^|/)(\d+)\.jpg$", re.IGNORECASE)


class DirSource:
    name = "local"

    def __init__(self, root: Path):
        if not Path(root).is_dir():
            raise SourceError(f"{root}: image folder not found (images.dir)")
        self.root = Path(root)

    def find(self, image_id: int) -> Path | None:
        for sub in VG_SUBDIRS:
            candidate = self.root / sub / f"{int(image_id)}.jpg"
            if candidate.is_file():
                return candidate
        return None

    def fingerprint(self, rec: dict[str, Any]) -> str | None:
        """Size and mtime of the folder's copy: a changed photo is acquired again."""
        src = self.find(rec["image_id"])
        if src is None:
            return None
        st = src.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"

    def fetch(self, rec: dict[str, Any], part: Path) -> FetchOutcome:
        src = self.find(rec["image_id"])
        if src is None:
            return FetchOutcome("missing", f"no {rec['image_id']}.jpg under {self.root}")
        with open(src, "rb") as f, open_nofollow(part, "wb") as dst:
            shutil.copyfileobj(f, dst, 1 << 20)
        return FetchOutcome("ok")

    def close(self) -> None:
        pass


class ZipSource:
    """Members named ``.../<image_id>.jpg`` in any of the zip files; the central
    directories are indexed once (~108k names for both VG zips)."""
    name = "zip"

    def __init__(self, paths: tuple[Path, ...]):
        self.paths = [Path(p) for p in paths]
        self.index: dict[int, tuple[int, str]] = {}
        self._zips: list[zipfile.ZipFile] = []
        for z, path in enumerate(self.paths):
            try:
                zf = zipfile.ZipFile(path)
            except FileNotFoundError:
                raise SourceError(f"{path}: zip file not found (images.zips)") from None
            except zipfile.BadZipFile as exc:
                raise SourceError(f"{path}: not a readable zip file: {exc}") from None
            self._zips.append(zf)
            for name in zf.namelist():
                m = _MEMBER.search(name)
                if m:
                    self.index.setdefault(int(m.group(1)), (z, name))
        # ZipFile reads through one shared handle; one reader at a time keeps it sane.
        self._lock = threading.Lock()

    def fingerprint(self, rec: dict[str, Any]) -> str | None:
        """Zip, member, CRC and size: a changed zip is read again for that photo."""
        hit = self.index.get(int(rec["image_id"]))
        if hit is None:
            return None
        z, member = hit
        info = self._zips[z].getinfo(member)
        return f"{self.paths[z].name}:{member}:{info.CRC:08x}:{info.file_size}"

    def fetch(self, rec: dict[str, Any], part: Path) -> FetchOutcome:
        hit = self.index.get(int(rec["image_id"]))
        if hit is None:
            names = ", ".join(p.name for p in self.paths)
            return FetchOutcome("missing", f"no member {rec['image_id']}.jpg in {names}")
        z, member = hit
        try:
            with self._lock, self._zips[z].open(member) as src, open_nofollow(part, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # CRC error, truncated member
            part.unlink(missing_ok=True)
            return FetchOutcome("corrupt", f"{self.paths[z].name}:{member}: {exc}")
        return FetchOutcome("ok")

    def close(self) -> None:
        for zf in self._zips:
            zf.close()


class HttpSource:
    name = "http"

    def __init__(self, settings: FetchSettings):
        self.fetcher = HttpFetcher(settings)

    @staticmethod
    def fingerprint(rec: dict[str, Any]) -> None:
        return None  # a server's copy is taken as fixed once verified

    def fetch(self, rec: dict[str, Any], part: Path) -> FetchOutcome:
        return self.fetcher.fetch(rec.get("url"), part)

    def close(self) -> None:
        self.fetcher.close()

    @staticmethod
    def record_problem(rec: dict[str, Any]) -> str | None:
        return check_scheme(rec.get("url"))
