"""Training on several datasets at once (``data.sources``), each at its weight.

``MixedSource`` puts its members' units side by side (a member's part numbers shifted
past the previous member's) and reads each unit from its member. Every training epoch,
``epoch_units`` draws the rows: of the epoch's N rows (``data.epoch_rows``, by default
the members' rows together), a
member of weight w gets round(N * w / sum of weights), a fresh random subset when that
is fewer than it holds, its rows repeated (whole permutations, then a partial one) when
more. The draw depends only on (seed, epoch), so every rank and worker makes the same one
and a resumed run replays it. Validation and evaluation read ``data.dir`` alone.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from train.sources import DataError, Unit, open_source


class MixedSource:
    kind = "mixed"

    def __init__(self, members: list[tuple[Any, float, tuple[str, ...]]],
                 epoch_rows: int | None = None) -> None:
        # (source, weight, recipes) per member.
        self.members, self.epoch_rows = members, epoch_rows
        self.root = Path("data.sources")
        self.has_phrases = all(getattr(src, "has_phrases", False) for src, _, _ in members)
        # What a resume must find again: each member's data, weight and recipes.
        mix = [[str(src.root), src.manifest_hash, w, list(r)] for src, w, r in members] + [epoch_rows]
        self.manifest_hash = hashlib.sha256(json.dumps(mix).encode()).hexdigest()[:16]
        # Part numbers of member i start at offsets[i]; a shard source's part is a file,
        # an iHarmony4 source's is its split (0 or 1).
        self.offsets, start = [], 0
        for src, _, _ in members:
            self.offsets.append(start)
            start += len(getattr(src, "parts", ("train", "test")))

    def _member(self, part: int) -> int:
        return max(i for i, off in enumerate(self.offsets) if off <= part)

    def splits(self) -> list[str]:
        return sorted(set.intersection(*(set(src.splits()) for src, _, _ in self.members)))

    def units(self, split: str, recipes: tuple[str, ...] = (),
              fg_ratio: tuple[float, float] = (0.0, 1.0)) -> list[Unit]:
        out = []
        for i, (src, _, own) in enumerate(self.members):
            try:
                units = src.units(split, own or recipes, fg_ratio)
            except DataError as exc:
                raise DataError(f"data.sources[{i}]: {exc}") from None
            if not units:
                raise DataError(f"data.sources[{i}]: {src.root}: no rows in split {split!r} "
                                f"with recipes {list(own or recipes)}")
            out += [Unit(u.part + self.offsets[i], u.group, u.rows) for u in units]
        return out

    def text_dim(self, units: list[Unit]) -> int | None:
        dims = set()
        for i, (src, _, _) in enumerate(self.members):
            off = self.offsets[i]
            dims.add(src.text_dim([Unit(u.part - off, u.group, u.rows) for u in units
                                   if self._member(u.part) == i]))
        if len(dims) > 1:
            raise DataError(f"data.sources: the CLIP embedding widths differ ({sorted(map(str, dims))}); "
                            "a text model needs every source captioned with one CLIP model")
        return dims.pop()

    def read(self, unit: Unit, text_keys: tuple[str, ...], phrase: bool = False) -> list[dict[str, Any]]:
        i = self._member(unit.part)
        return self.members[i][0].read(Unit(unit.part - self.offsets[i], unit.group, unit.rows), text_keys,
                                       phrase)

    def shares(self, units: list[Unit]) -> list[int]:
        """Rows each member gets in an epoch."""
        held = [0] * len(self.members)
        for u in units:
            held[self._member(u.part)] += len(u.rows)
        total, weight = self.epoch_rows or sum(held), sum(w for _, w, _ in self.members)
        return [round(total * w / weight) for _, w, _ in self.members]

    def epoch_units(self, units: list[Unit], seed: int, epoch: int) -> list[Unit]:
        """This epoch's draw (module docstring), as units in reading order."""
        rows: list[list[tuple[int, int, int]]] = [[] for _ in self.members]
        for u in units:
            rows[self._member(u.part)] += [(u.part, u.group, r) for r in u.rows]
        rng = np.random.default_rng([seed, epoch, len(self.members)])
        out = []
        for held, n in zip(rows, self.shares(units)):
            picks = np.concatenate([rng.permutation(len(held)) for _ in range(-(-n // len(held)))])[:n]
            grouped: dict[tuple[int, int], list[int]] = defaultdict(list)
            for k in np.sort(picks):
                part, group, row = held[k]
                grouped[part, group].append(row)
            out += [Unit(part, group, tuple(r)) for (part, group), r in grouped.items()]
        return out


def training_source(data) -> Any:
    """The rows ``data`` (a TrainData) trains on: ``data.dir``, or the mix of ``data.sources``."""
    if not data.sources:
        return open_source(data.dir)
    return MixedSource([(open_source(p.dir), p.weight, tuple(p.recipes)) for p in data.sources],
                       data.epoch_rows)


def describe_data(data) -> str:
    """``data.dir``, or the mix as ``dir x weight`` parts, for logs."""
    if not data.sources:
        return str(data.dir)
    total = sum(p.weight for p in data.sources)
    return " + ".join(f"{p.dir} ({p.weight / total:.0%})" for p in data.sources)
