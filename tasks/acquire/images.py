"""Reading acquired images at the stored size."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tasks.acquire.downloader import image_path

# VGPhraseCut's polygons are in stored-pixel coordinates, so EXIF orientation is ignored
# (OpenCV would otherwise rotate the photo against its polygons; the verifier records
# which files had one).
_REDUCED = {f: flag | cv2.IMREAD_IGNORE_ORIENTATION for f, flag in (
    (1, cv2.IMREAD_COLOR), (2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4),
    (8, cv2.IMREAD_REDUCED_COLOR_8))}


def decode_resized(data: bytes | np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int]] | None:
    """JPEG bytes -> (size x size RGB uint8, (orig width, orig height)), or None.

    Large photos are decoded at 1/2, 1/4 or 1/8 scale by libjpeg (DCT scaling) when that
    still leaves at least ``size`` pixels per side: a fraction of the decode time, and
    the resize that follows sees the detail it would keep anyway.
    """
    buf = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    orig = _jpeg_size(buf)
    # The largest DCT scaling that still leaves at least `size` pixels per side.
    factor = next((f for f in (8, 4, 2) if orig is not None and min(orig) // f >= size), 1)
    bgr = cv2.imdecode(buf, _REDUCED[factor])
    if bgr is None:
        return None
    if factor == 1:
        orig = (bgr.shape[1], bgr.shape[0])
    return cv2.cvtColor(shrink(bgr, size), cv2.COLOR_BGR2RGB), orig


def shrink(img: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size with area averaging.

    OpenCV's INTER_AREA is fast at integer ratios and ~10x slower at others (2-3 ms for
    a 640x427 photo here, more than the decode). So: bilinear to 2*size (a ratio under
    2 from what the DCT-scaled decode leaves, so it hardly aliases), then an exact 2x2
    box average. It differs from a one-step area resize by ~0.3 code values on average
    and costs a third."""
    h, w = img.shape[:2]
    if (w, h) == (size, size):
        return img.copy()
    if w % size == 0 and h % size == 0 or max(w, h) > 4 * size:
        return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    mid = cv2.resize(img, (2 * size, 2 * size), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(mid, (size, size), interpolation=cv2.INTER_AREA)


def _jpeg_size(buf: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from a JPEG's SOF marker, without decoding; None if not found."""
    data = buf.tobytes() if len(buf) < 1 << 16 else buf[: 1 << 16].tobytes()
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    return None


def load_resized(images_dir: Path, image_id: int,
                 size: int) -> tuple[np.ndarray, tuple[int, int]] | None:
    """An acquired image at the stored size, with its original size; None if unreadable."""
    try:
        data = image_path(images_dir, image_id).read_bytes()
    except OSError:
        return None
    return decode_resized(data, size)
