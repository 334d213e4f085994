"""Real photos for the bundled sample, loaded from installed packages (never committed).

scikit-image, scikit-learn and matplotlib each ship a few real photographs; the sample
annotations in ``sample_data/`` refer to them by these image ids.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SAMPLE_PHOTOS: dict[int, str] = {
    9100001: "astronaut", 9100002: "chelsea", 9100003: "coffee", 9100004: "rocket",
    9100005: "motorcycle", 9100006: "china", 9100007: "flower", 9100008: "grace_hopper",
}
# Fixed quality so the materialized JPEGs (and so every shard) are reproducible.
JPEG_QUALITY = 95


def load_photo(key: str) -> np.ndarray:
    """RGB uint8 array of one packaged photo."""
    if key in ("astronaut", "chelsea", "coffee", "rocket"):
        from skimage import data
        return getattr(data, key)()
    if key == "motorcycle":
        from skimage import data
        return data.stereo_motorcycle()[0]
    if key in ("china", "flower"):
        try:
            from sklearn.datasets import load_sample_image
        except ImportError as exc:
            raise RuntimeError("sample photo needs scikit-learn: pip install -e '.[sample]'") from exc
        return load_sample_image(f"{key}.jpg")
    if key == "grace_hopper":
        try:
            import matplotlib.cbook as cbook
        except ImportError as exc:
            raise RuntimeError("sample photo needs matplotlib: pip install -e '.[sample]'") from exc
        with cbook.get_sample_data("grace_hopper.jpg") as f:
            buf = np.frombuffer(f.read(), np.uint8)
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    raise KeyError(f"no packaged photo called {key!r}")


def materialize(dest: Path) -> list[Path]:
    """Write every sample photo as ``dest/<image_id>.jpg`` (skipping existing files)."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for image_id, key in SAMPLE_PHOTOS.items():
        path = dest / f"{image_id}.jpg"
        if not path.exists():
            rgb = np.ascontiguousarray(load_photo(key)[..., :3])
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            tmp = path.with_suffix(".jpg.tmp")
            tmp.write_bytes(buf.tobytes())
            tmp.replace(path)
        written.append(path)
    return written
