"""The code's layout: moving modules between folders must not change a single row, and
imports run one way (core, then the phases in pipeline order, then the look library and
the flows on top)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow.parquet as pq

GOLDEN = Path(__file__).parent / "fixtures" / "sample_row_digests.json"


def row_digests(out_dir: Path) -> dict[str, str]:
    """sample_id -> sha256 over every column of its row (bytes as they are, the rest as
    JSON), for every shard of a build."""
    digests = {}
    for path in sorted((out_dir / "data").rglob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            h = hashlib.sha256()
            for name in sorted(row):
                value = row[name]
                h.update(name.encode())
                h.update(value if isinstance(value, bytes)
                         else json.dumps(value, sort_keys=True, default=repr).encode())
            digests[row["sample_id"]] = h.hexdigest()
    return dict(sorted(digests.items()))


def test_sample_rows_equal_the_recorded_ones(sample_dataset):
    """The sample build's rows, digest by digest, as recorded before `tasks/` was split
    into phase folders. A change that is meant to alter rows (a new recipe, a judge
    rule) rewrites the record: PHRASEHARMONY_WRITE_GOLDEN=1 pytest tests/test_layout.py."""
    got = row_digests(sample_dataset)
    if os.environ.get("PHRASEHARMONY_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=0) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert len(got) == len(want) and got.keys() == want.keys()
    changed = sorted(k for k in want if got[k] != want[k])
    assert not changed, f"{len(changed)} of {len(want)} rows changed, first {changed[:3]}"


# Lowest first; a module may import its own layer or any below it, never above. The
# look library builds on the LUT engine and reaches `tasks/` only through the flows.
LAYERS = ["schemas", "tasks.core", "tasks.acquire", "tasks.captions", "tasks.synthesize",
          "tasks.publish", "lut_library", "train", "flows"]
REPO = Path(__file__).resolve().parent.parent


def _layer(module: str) -> int | None:
    parts = module.split(".")
    for name in (".".join(parts[:2]), parts[0]):
        if name in LAYERS:
            return LAYERS.index(name)
    return None  # not ours (numpy, prefect, ...) or the `tasks` package itself


def upward_imports(root: Path = REPO) -> list[str]:
    """Every import (at the top or inside a function) that reaches a higher layer."""
    import ast

    found = []
    for top in sorted({name.split(".")[0] for name in LAYERS}):
        for path in sorted((root / top).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            mine = _layer(module)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    targets = ([f"{node.module}.{a.name}" for a in node.names]
                               if node.module in ("tasks", "flows") else [node.module])
                elif isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                else:
                    continue
                for target in targets:
                    theirs = _layer(target)
                    if mine is not None and theirs is not None and theirs > mine:
                        found.append(f"{path.relative_to(root)}:{node.lineno} {module} -> {target}")
    return found


def test_imports_run_downward_only():
    assert upward_imports() == []


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The check itself: a `tasks.core` module importing a phase, and a stage reaching the
    look library from inside a function, are both found."""
    import shutil

    for top in ("schemas", "tasks", "lut_library", "train", "flows"):
        shutil.copytree(REPO / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "tasks" / "core" / "bad.py").write_text("from tasks.synthesize import luts\n")
    (tmp_path / "tasks" / "publish" / "worse.py").write_text(
        "def f():\n    from lut_library import pool_for\n")
    found = upward_imports(tmp_path)
    assert [f.split(" ", 1)[1] for f in found] == ["tasks.core.bad -> tasks.synthesize",
                                                   "tasks.publish.worse -> lut_library"]


def test_old_module_paths_still_import_with_a_warning():
    """A user's script written against the flat layout keeps working for one release."""
    import importlib
    import subprocess
    import sys

    code = ("import warnings; warnings.simplefilter('error')\n"
            "try:\n    import tasks.realism\nexcept FutureWarning as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert "tasks.realism has moved to tasks.synthesize.realism" in out.stdout, out.stderr
    new = importlib.import_module("tasks.synthesize.realism")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import flows.cli_train
        from tasks import realism  # the flat layout's spelling
    assert realism is new and realism.assess is new.assess
    assert flows.cli_train is importlib.import_module("flows.cli.train")
