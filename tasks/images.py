"""Reading acquired images at the stored size."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tasks.acquisition import image_path


def decode_resized(data: bytes | np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int]] | None:
    """JPEG bytes -> (size x size RGB uint8, (orig width, orig height)), or None.

    Large photos are decoded at half scale by libjpeg (DCT scaling) when that still
    leaves at least ``size`` pixels per side: about half the decode time, and the area
    resize that follows sees the same detail it would keep anyway.
    """
    buf = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    orig = _jpeg_size(buf)
    half = orig is not None and min(orig) // 2 >= size
    bgr = cv2.imdecode(buf, cv2.IMREAD_REDUCED_COLOR_2 if half else cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    if not half:
        orig = (bgr.shape[1], bgr.shape[0])
    rgb = cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA),
                       cv2.COLOR_BGR2RGB)
    return rgb, orig


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
