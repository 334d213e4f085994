"""Streaming the records of a JSON array file, with a bound on nesting depth.

refer_train.json is 344 MB: ``json.load`` would hold ~3 GB of Python objects, the
streaming parser (ijson, yajl C backend) holds one record. But ijson's item builder
keeps a path prefix per level, so its memory grows with the *square* of the nesting
depth: one 82 KB record nested 30,000 deep took 2.2 GB. So records are built here from
ijson's prefix-free events (still the C parser; ~1.6x the time of its item builder,
a few seconds on the full file), and a value nested past the bound becomes ``TOO_DEEP``
without being built: its record is skipped by the validator, never the whole file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from schemas.errors import UserError


class JsonFileError(UserError, ValueError):
    """The file is not a JSON array of records; the message names the file."""


class _TooDeep:
    """Stands for a value nested deeper than the bound (never built)."""

    def __repr__(self) -> str:
        return "TOO_DEEP"


TOO_DEEP = _TooDeep()


def _bounded_items(events, max_depth: int) -> Iterator[Any]:
    """The items of a top-level array built from ijson's prefix-free events; any value
    more than ``max_depth`` levels inside an item becomes ``TOO_DEEP``."""
    stack: list[Any] = []      # open containers of the current item
    keys: list[Any] = []       # pending map key per open map (None for arrays)
    skipping = 0               # levels inside a too-deep value
    started = False
    for event, value in events:
        if not started:
            started = True
            if event != "start_array":
                raise ValueError("not an array")
            continue
        if skipping:
            if event in ("start_map", "start_array"):
                skipping += 1
            elif event in ("end_map", "end_array"):
                skipping -= 1
            if skipping == 0:
                value, event = TOO_DEEP, "value"
            else:
                continue
        if event == "map_key":
            keys[-1] = value
            continue
        if event in ("start_map", "start_array"):
            if len(stack) >= max_depth:
                skipping = 1
                continue
            stack.append({} if event == "start_map" else [])
            keys.append(None)
            continue
        if event in ("end_map", "end_array"):
            if not stack:  # the end of the top-level array
                return
            value = stack.pop()
            keys.pop()
        if not stack:
            yield value
        elif isinstance(stack[-1], dict):
            stack[-1][keys[-1]] = value
        else:
            stack[-1].append(value)


def iter_json_array(path: Path, max_depth: int = 64) -> Iterator[Any]:
    """Stream the records of a file holding one JSON array, one at a time; values
    nested more than ``max_depth`` levels inside a record become ``TOO_DEEP``."""
    import ijson

    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise JsonFileError(f"{path}: file not found") from None
    with f:
        raw = f.read(4096)
        bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0  # a UTF-8 BOM the parser rejects
        head = raw[bom:].lstrip(b" \t\r\n")
        if not head.startswith(b"["):
            kind = {b"{": "an object", b"": "nothing"}.get(head[:1], "not a JSON array")
            raise JsonFileError(f"{path}: expected a JSON array of records, got {kind}")
        f.seek(bom)
        try:
            yield from _bounded_items(ijson.basic_parse(f, use_float=True), max_depth)
        except (ijson.JSONError, UnicodeDecodeError, ValueError) as exc:
            raise JsonFileError(f"{path}: not valid JSON: {exc}") from exc
