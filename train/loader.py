"""The streaming training loader: units split by rank, then by worker; shuffled per epoch.

Every epoch the units of the split are shuffled with (seed, epoch) and dealt out
greedily, each to the rank with the fewest rows so far, then within the rank to the
worker with the fewest (so uneven row groups leave every rank and worker within one unit
of the others). A worker reads its units in that order through a shuffle buffer, cuts
batches of ``batch_size`` rows (its last one may be short), decodes them and flips each
sample with a per-batch seed. One epoch therefore yields every selected row exactly once
across all ranks and workers.

With several ranks in training (``even_ranks``) each rank takes as many batches as the
rank with the fewest, so DDP's collective calls pair up; the rows left out are at most
about one unit's worth and differ every epoch (evaluation runs on one rank and reads
every row). A batch whose every row fails to decode is counted but not yielded; under
DDP that would leave its rank one step short, so such data should be rebuilt first.

Workers are started once per loader (persistent; the epoch to play travels in a shared
tensor) from a fork server, never forked from the trainer, which may be a Prefect
process whose threads make a forked worker die at start.

Resuming mid-epoch: DataLoader delivers worker batches round robin, skipping finished
workers, so the first ``start`` batches of an epoch are known per worker. Workers replay
their row order for those batches without decoding and send a placeholder; the
following batches are then exactly an uninterrupted run's.
"""

from __future__ import annotations

import math
import multiprocessing
from collections import Counter
from typing import Any, Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from schemas.train_config import TrainData
from train.models import PHRASE_KEYS
from train.sources import DataError, Unit

# Examples kept per skip reason for the end-of-epoch report.
SKIP_EXAMPLES = 3


def deal(weights: list[int], bins: int, order: list[int]) -> list[list[int]]:
    """Items in ``order``, each to the bin with the least weight so far (lowest on ties)."""
    out: list[list[int]] = [[] for _ in range(bins)]
    load = [0] * bins
    for item in order:
        b = min(range(bins), key=lambda i: (load[i], i))
        out[b].append(item)
        load[b] += weights[item]
    return out


def epoch_plan(
    units: list[Unit], seed: int, epoch: int, world: int, workers: int, shuffle: bool
) -> list[list[list[int]]]:
    """plan[rank][worker] = unit indices in reading order."""
    sizes = [len(u.rows) for u in units]
    order = (
        np.random.default_rng([seed, epoch]).permutation(len(units)).tolist()
        if shuffle
        else list(range(len(units)))
    )
    plan = []
    for rank_units in deal(sizes, world, order):
        plan.append(deal(sizes, max(workers, 1), rank_units))
    return plan


def taken_per_worker(lengths: list[int], k: int) -> list[int]:
    """How many of each worker's batches the first ``k`` delivered batches are, under
    DataLoader's order: round robin over workers, passing over those that are done."""
    taken = [0] * len(lengths)
    w = 0
    for _ in range(k):
        for _ in range(len(lengths)):
            if taken[w] < lengths[w]:
                break
            w = (w + 1) % len(lengths)
        else:
            raise ValueError(f"only {sum(lengths)} batches in this epoch, cannot skip {k}")
        taken[w] += 1
        w = (w + 1) % len(lengths)
    return taken


def decode_image(data: bytes | None, flags: int) -> np.ndarray | None:
    if not data:
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags | cv2.IMREAD_IGNORE_ORIENTATION)


def _resized(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[:2] == (size, size):
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def decode_triple(row: dict[str, Any], size: int, flip: bool) -> tuple[np.ndarray, ...] | str:
    """(composite, target, mask) as (H, W, 3) RGB uint8 x2 and (H, W) 0/1, or a skip reason.
    The three must share a size (one photo's pixels); then they are resized to ``size``."""
    if row.get("error"):
        return "missing_file"
    comp = decode_image(row["composite"], cv2.IMREAD_COLOR)
    target = decode_image(row["target"], cv2.IMREAD_COLOR)
    mask = decode_image(row["mask"], cv2.IMREAD_GRAYSCALE)
    if comp is None or target is None or mask is None:
        return "undecodable_image"
    if not comp.shape[:2] == target.shape[:2] == mask.shape[:2]:
        return "size_mismatch"   # not a pair of one photo: training on it would teach a shift
    comp, target, mask = _resized(comp, size), _resized(target, size), _resized(mask, size)
    mask = (mask > 127).astype(np.uint8)  # binary, as HT's evaluator
    comp, target = comp[..., ::-1], target[..., ::-1]  # OpenCV's BGR -> RGB
    if flip:
        comp, target, mask = comp[:, ::-1], target[:, ::-1], mask[:, ::-1]
    return comp, target, mask


class TripleStream(IterableDataset):
    """One rank's view of one epoch; each DataLoader worker takes its share of units."""

    def __init__(
        self,
        source,
        units: list[Unit],
        *,
        batch_size: int,
        size: int,
        seed: int,
        epoch: int,
        rank: int,
        world: int,
        workers: int,
        shuffle: bool,
        flip: bool,
        buffer: int,
        text_keys: tuple[str, ...],
        phrases: str | None = None,
        decode: str = "opencv",
        start: int = 0,
        control: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        # "opencv" (training) or "ht" (the authors' evaluation: PIL, train.protocol_ht).
        self.decode = decode
        self.source, self.units = source, units
        self.batch_size, self.size, self.seed, self.epoch = batch_size, size, seed, epoch
        self.rank, self.world, self.workers = rank, world, workers
        self.shuffle, self.flip, self.buffer = shuffle, flip, buffer
        self.text_keys, self.start = text_keys, start
        # The CLIPSeg whose tokenizer the phrases go through (None: no phrases).
        self.phrases = phrases
        # Shared (epoch, start): persistent workers read the epoch to play from it.
        self.control = control

    def epoch_units(self) -> list[Unit]:
        """The units of this epoch: a training mix (``train.mix``) draws them anew each epoch."""
        draw = getattr(self.source, "epoch_units", None)
        return draw(self.units, self.seed, self.epoch) if draw and self.shuffle else self.units

    def plan(self) -> tuple[list[Unit], list[list[list[int]]]]:
        """(this epoch's units, plan[rank][worker] = indices into them in reading order)."""
        units = self.epoch_units()
        return units, epoch_plan(units, self.seed, self.epoch, self.world, self.workers, self.shuffle)

    def worker_lengths(self, planned: tuple[list[Unit], list[list[list[int]]]] | None = None) -> list[int]:
        """Batches per worker of this rank (``planned``: this epoch's plan, when already made)."""
        units, plan = planned or self.plan()
        return [math.ceil(sum(len(units[u].rows) for u in w) / self.batch_size) for w in plan[self.rank]]

    def _rows(self, units: list[Unit], mine: list[int], rng: np.random.Generator) -> Iterator[dict[str, Any]]:
        buf: list[dict[str, Any]] = []
        for u in mine:
            for row in self.source.read(units[u], self.text_keys, phrase=self.phrases is not None):
                if not self.shuffle:
                    yield row
                elif len(buf) < self.buffer:
                    buf.append(row)
                else:
                    i = int(rng.integers(len(buf)))
                    yield buf[i]
                    buf[i] = row
        rng.shuffle(buf)
        yield from buf

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        wid = info.id if info else 0
        if self.control is not None:
            self.epoch, self.start = int(self.control[0]), int(self.control[1])
        units, plan = planned = self.plan()
        skip = taken_per_worker(self.worker_lengths(planned), self.start)[wid]
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, wid])
        batch: list[dict[str, Any]] = []
        j = 0
        try:
            for row in self._rows(units, plan[self.rank][wid], rng):
                batch.append(row)
                if len(batch) == self.batch_size:
                    yield {"placeholder": True} if j < skip else self._collate(batch, wid, j)
                    batch, j = [], j + 1
            if batch:
                yield {"placeholder": True} if j < skip else self._collate(batch, wid, j)
        except DataError as exc:
            # One line for the trainer to raise, instead of a worker traceback.
            yield {"error": str(exc)}

    def _collate(self, rows: list[dict[str, Any]], wid: int, j: int) -> dict[str, Any]:
        flips = (
            np.random.default_rng([self.seed, self.epoch, self.rank, wid, j]).random(len(rows)) < 0.5
            if self.flip
            else np.zeros(len(rows), bool)
        )
        kept, skipped = [], []
        for row, flip in zip(rows, flips):
            if self.decode == "ht" and not row.get("error"):
                from train.protocol_ht import read_triple

                got = read_triple(row["composite"], row["target"], row["mask"])
            else:
                got = decode_triple(row, self.size, bool(flip))
            if isinstance(got, str):
                # The example names the file at fault when it is not the row itself.
                where = f"{row['sample_id']} ({row['error']})" if row.get("error") else row["sample_id"]
                skipped.append((where, got))
                continue
            missing = [k for k in self.text_keys if row.get(k) is None]
            if missing:
                skipped.append((row["sample_id"], f"no_{missing[0]}"))
                continue
            kept.append((row, got, bool(flip)))
        out: dict[str, Any] = {
            "sample_id": [r["sample_id"] for r, _, _ in kept],
            "recipe": [r["recipe"] for r, _, _ in kept],
            "skipped": skipped,
        }
        if kept:
            for i, key in enumerate(("composite", "target")):
                out[key] = torch.from_numpy(np.stack([g[i] for _, g, _ in kept]).transpose(0, 3, 1, 2).copy())
            out["mask"] = torch.from_numpy(np.stack([g[2] for _, g, _ in kept])[:, None].copy())
            for key in self.text_keys:
                out[key] = torch.from_numpy(np.stack([np.asarray(r[key], np.float32) for r, _, _ in kept]))
            if self.phrases is not None:
                from train.region import mirror_phrase, tokenize

                # A flipped photo's left is its right: the phrase says so too.
                out["phrase"] = [mirror_phrase(r["phrase"]) if f else r["phrase"] for r, _, f in kept]
                out["phrase_ids"], out["phrase_attention"], _ = tokenize(self.phrases, out["phrase"])
        return out


def worker_context() -> multiprocessing.context.BaseContext:
    """Workers start from a clean server process, never by forking this one: the trainer
    may run inside Prefect (threads, event loops), where a forked worker dies at start.
    The server has this module (and torch) imported, so a worker starts in milliseconds.
    The server dies with the trainer and the workers with the server
    (``train.worker_lifetime``): a killed trainer leaves no process behind."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["train.worker_lifetime", "train.loader"])
    return ctx


def _init_worker(_: int) -> None:
    from train import worker_lifetime

    worker_lifetime.worker_started()
    # One decoding thread per worker process: the workers are the parallelism.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


class Loader:
    """Batches of one split for one rank, epoch by epoch, on ``device``.

    A batch: ``composite``, ``target`` (B, 3, H, W) and ``mask`` (B, 1, H, W) float in
    [0, 1]; ``clip_phrase`` / ``clip_caption`` (B, D) float when asked for; with
    ``phrases`` (a CLIPSeg spec) the ``phrase`` texts and their ``phrase_ids`` /
    ``phrase_attention`` tokens (made in the workers); ``sample_id`` and ``recipe``
    lists; ``fg_ratio`` (B,). Rows that fail to decode are left out of
    their batch and counted in ``skips`` (reported per epoch); a batch left empty is
    counted as consumed but not yielded.
    """

    def __init__(
        self,
        source,
        split: str,
        data: TrainData,
        batch_size: int,
        seed: int,
        *,
        train: bool,
        rank: int = 0,
        world: int = 1,
        text_keys: tuple[str, ...] = (),
        phrases: str | None = None,
        device: str | torch.device = "cpu",
        select: bool = True,
        even_ranks: bool = False,
        decode: str = "opencv",
    ) -> None:
        self.source, self.split, self.data = source, split, data
        self.decode = decode
        if phrases is not None and not getattr(source, "has_phrases", False):
            raise DataError(f"{source.root}: {source.kind} rows carry no referring phrase; a model that "
                            "finds its region from the phrase (clipseg_ht) needs a PhraseHarmony build")
        # The CLIPSeg (spec) whose tokenizer the workers run on each row's phrase.
        self.phrases = phrases
        recipes, fg = (data.recipes, data.fg_ratio) if select else ((), (0.0, 1.0))
        self.units = source.units(split, recipes, fg)
        if not self.units:
            what = f" with recipes {list(recipes)}" if recipes else ""
            what += f" and fg_ratio in {list(fg)}" if tuple(fg) != (0.0, 1.0) else ""
            raise DataError(
                f"{source.root}: no rows in split {split!r}{what} "
                f"(splits there: {', '.join(source.splits())})"
            )
        # Rows per epoch (a training mix draws its own number: train.mix).
        self.rows = sum(source.shares(self.units)) if train and hasattr(source, "shares") else \
            sum(len(u.rows) for u in self.units)
        self.batch_size, self.seed, self.train = batch_size, seed, train
        self.rank, self.world, self.text_keys = rank, world, text_keys
        # DDP: every rank takes the smallest rank's batch count (module docstring).
        self.even_ranks = even_ranks
        self.device = torch.device(device)
        self.skips: Counter[str] = Counter()
        self._control = torch.zeros(2, dtype=torch.int64).share_memory_()
        self._loader: DataLoader | None = None
        self.skip_examples: dict[str, list[str]] = {}

    def _stream(self, epoch: int, start: int, rank: int | None = None) -> TripleStream:
        return TripleStream(
            self.source,
            self.units,
            batch_size=self.batch_size,
            size=self.data.size,
            seed=self.seed,
            epoch=epoch,
            rank=self.rank if rank is None else rank,
            world=self.world,
            workers=self.data.workers,
            shuffle=self.train,
            flip=self.train and self.data.flip,
            buffer=self.data.shuffle_buffer,
            text_keys=self.text_keys,
            phrases=self.phrases,
            decode=self.decode,
            start=start,
            control=self._control,
        )

    def batches_in_epoch(self, epoch: int) -> int:
        mine = sum(self._stream(epoch, 0).worker_lengths())
        if not self.even_ranks or self.world == 1:
            return mine
        return min(sum(self._stream(epoch, 0, r).worker_lengths()) for r in range(self.world))

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, Any]]:
        """Batches ``start``, ``start + 1``, ... of ``epoch`` (each tagged with its ``index``)."""
        total = self.batches_in_epoch(epoch)
        self._control[0], self._control[1] = epoch, start
        it = iter(self._dataloader())
        try:
            for index, batch in enumerate(it):
                if index >= total:
                    break
                if "error" in batch:
                    raise DataError(batch["error"])
                if index < start:
                    assert batch.get("placeholder"), "resume skipped a decoded batch"
                    continue
                for sample_id, reason in batch["skipped"]:
                    self.skips[reason] += 1
                    ex = self.skip_examples.setdefault(reason, [])
                    if len(ex) < SKIP_EXAMPLES:
                        ex.append(sample_id)
                if batch["sample_id"]:
                    yield self.to_device(batch) | {"index": index}
        finally:
            del it

    def _dataloader(self) -> DataLoader:
        # Workers persist across epochs (started once; the epoch travels in _control).
        if self._loader is None:
            workers = self.data.workers
            self._loader = DataLoader(
                self._stream(0, 0),
                batch_size=None,
                num_workers=workers,
                worker_init_fn=_init_worker if workers else None,
                pin_memory=self.device.type == "cuda",
                prefetch_factor=4 if workers else None,
                persistent_workers=workers > 0,
                multiprocessing_context=worker_context() if workers else None,
            )
        return self._loader

    def close(self) -> None:
        """Stop the worker processes (they also stop when the loader is collected)."""
        self._loader = None

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        # Pixels cross processes as uint8 (4x less than float) and become float here,
        # on the GPU when there is one.
        out = dict(batch)
        dev, nb = self.device, self.device.type == "cuda"
        for key in ("composite", "target"):
            out[key] = batch[key].to(dev, non_blocking=nb).float().div_(255)
        out["mask"] = batch["mask"].to(dev, non_blocking=nb).float()
        out["fg_ratio"] = out["mask"].mean(dim=(1, 2, 3))
        for key in self.text_keys + (PHRASE_KEYS if self.phrases is not None else ()):
            out[key] = batch[key].to(dev, non_blocking=nb)
        return out

    def take_skip_report(self) -> dict[str, Any]:
        """Counts and examples of rows skipped since the last call."""
        report = {"counts": dict(self.skips), "examples": dict(self.skip_examples)}
        self.skips, self.skip_examples = Counter(), {}
        return report
