"""Decoding and resizing ahead of the models, in worker processes.

Workers decode with OpenCV (EXIF ignored, like everywhere in the pipeline) and apply
the models' own spatial preprocessing to the uint8 image: BLIP's processor resize
(PIL, its configured size and resample) and open_clip's Resize + CenterCrop. They send
back uint8 arrays (~0.6 MB a photo, a quarter of float32); rescaling and normalising
happen on the model's device. That is exactly what the PIL pipelines compute, so an
embedding equals open_clip's own ``preprocess`` on the same photo.

The pool is spawned once per process and kept (its start costs seconds; a stage has
many parts). Forked DataLoader workers were not an option: inside a Prefect flow run
they exit with status 1 at shutdown.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

_SPATIAL_STEPS = ("Resize", "CenterCrop")


def clip_spatial(preprocess):
    """open_clip's preprocess without its tensor conversion and normalisation, and the
    Normalize step's mean and std."""
    from torchvision.transforms import Compose

    steps = [t for t in preprocess.transforms if type(t).__name__ in _SPATIAL_STEPS]
    norm = next(t for t in preprocess.transforms if type(t).__name__ == "Normalize")
    return Compose(steps), (tuple(norm.mean), tuple(norm.std))


def _worker_init() -> None:
    import tasks.core.torch_compat  # noqa: F401  (before torchvision is unpickled)
    from tasks.core.lifecycle import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the build decides what Ctrl-C means
    die_with_parent()
    import open_clip  # noqa: F401  (seconds: at the pool's start, not in a batch's way)


def prepare(images_dir: Path, image_ids: list[int], blip_size: tuple[int, int] | None,
            blip_resample: int, clip_steps) -> tuple[list[int], np.ndarray | None, np.ndarray, list[int]]:
    """(ids decoded, BLIP uint8 (n, H, W, 3) or None, CLIP uint8 (n, h, w, 3), ids that failed)."""
    import cv2
    from PIL import Image

    from tasks.acquire.downloader import image_path

    ok, blip, clip, failed = [], [], [], []
    for image_id in image_ids:
        try:
            data = np.frombuffer(image_path(images_dir, image_id).read_bytes(), np.uint8)
        except OSError:
            failed.append(image_id)
            continue
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if bgr is None:
            failed.append(image_id)
            continue
        pil = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if blip_size is not None:
            blip.append(np.asarray(pil.resize(blip_size[::-1], resample=blip_resample)))
        clip.append(np.asarray(clip_steps(pil)))
        ok.append(image_id)
    return ok, (np.stack(blip) if blip else None), (np.stack(clip) if clip else None), failed


@lru_cache(maxsize=1)
def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init)


def _started(_: int) -> int:
    import time

    time.sleep(0.2)   # long enough that every job lands on a different worker
    return os.getpid()


def start_pool(workers: int) -> None:
    """Start every worker and wait for its imports (seconds each: a benchmark times
    batches, not the pool's start)."""
    if workers:
        list(_pool(workers).map(_started, range(workers)))


# Photos per worker job: small jobs spread one model batch over every worker (a
# 512-photo batch prepared by one worker kept the GPU waiting for seconds).
CHUNK = 32


def batches(images_dir: Path, image_ids: list[int], batch_size: int, workers: int,
            blip_size, blip_resample: int, clip_steps) -> Iterator[tuple]:
    """``prepare`` over consecutive batches of ``batch_size`` photos, in order. With
    ``workers`` > 0 the photos go out in chunks of ``CHUNK``, four per worker in
    flight, and are put back together into batches here."""
    batch_ids = [image_ids[i:i + batch_size] for i in range(0, len(image_ids), batch_size)]
    if workers == 0:
        for ids in batch_ids:
            yield prepare(images_dir, ids, blip_size, blip_resample, clip_steps)
        return
    pool = _pool(workers)
    jobs = deque((b, ids[i:i + CHUNK]) for b, ids in enumerate(batch_ids)
                 for i in range(0, len(ids), CHUNK))
    inflight: deque = deque()
    parts: list[tuple] = []
    current = 0
    while jobs or inflight:
        while jobs and len(inflight) < 4 * workers:
            b, chunk = jobs.popleft()
            inflight.append((b, pool.submit(prepare, images_dir, chunk, blip_size, blip_resample,
                                            clip_steps)))
        b, future = inflight.popleft()
        if b != current:
            yield _join(parts)
            parts, current = [], b
        parts.append(future.result())
    if parts:
        yield _join(parts)


@lru_cache(maxsize=2)
def _tokenizer(name: str):
    import open_clip

    return open_clip.get_tokenizer(name)


def tokenize(name: str, texts: list[str]):
    """open_clip's tokens for ``texts`` with the tokenizer of model ``name``."""
    return _tokenizer(name)(texts)


# Texts per tokenizing job: open_clip's tokenizer is pure Python (~0.1 ms a text, ~9
# texts a photo), work the process feeding the GPU should not do itself.
TEXT_CHUNK = 256


class Tokens:
    """CLIP tokens of ``texts``, made in the pool's worker processes (in-process with no
    workers); ``get()`` waits for them. Started while the models work on the next batch."""

    def __init__(self, name: str, texts: list[str], workers: int):
        chunks = [texts[i:i + TEXT_CHUNK] for i in range(0, len(texts), TEXT_CHUNK)]
        if workers == 0:
            self._parts = [tokenize(name, c) for c in chunks]
        else:
            self._parts = [_pool(workers).submit(tokenize, name, c) for c in chunks]

    def get(self):
        import torch

        parts = [p if isinstance(p, torch.Tensor) else p.result() for p in self._parts]
        return torch.cat(parts) if parts else None


def _join(parts: list[tuple]) -> tuple:
    ok = [i for p in parts for i in p[0]]
    failed = [i for p in parts for i in p[3]]

    def cat(k):
        arrays = [p[k] for p in parts if p[k] is not None]
        return np.concatenate(arrays) if arrays else None
    return ok, cat(1), cat(2), failed
