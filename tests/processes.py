"""The process tree under a test's subprocess, read from /proc (Linux): what a killed
build or training run must not leave behind."""

from __future__ import annotations

from pathlib import Path


def _parents() -> dict[int, int]:
    """{pid: its parent's pid} for every process now."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue   # ended while being read
    return out


def children(pid: int) -> set[int]:
    return {p for p, parent in _parents().items() if parent == pid}


def descendants(pid: int) -> set[int]:
    parents = _parents()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running: a zombie (Z) or dying (X) process is dead, its
    reaper may just be slow."""
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            out.add(pid)
    return out
