"""Shared fixtures: an offline Prefect test server, and one sample build for many tests."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CONFIG = REPO / "configs" / "sample.yaml"


# Prefect must never reach outside, nor reuse a previous session's state or results.
_HOME = Path(tempfile.mkdtemp(prefix="phraseharmony-prefect-"))
os.environ.update({
    "PREFECT_HOME": str(_HOME),
    "PREFECT_LOCAL_STORAGE_PATH": str(_HOME / "storage"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    # No model hub is reachable: fail at once instead of retrying (read at import).
    "HF_HUB_OFFLINE": "1",
    # A process that lost its API URL fails loudly: Prefect's default profile would start
    # a private server for it, which records that process's runs where no test looks.
    "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false",
})
os.environ.pop("PREFECT_API_URL", None)


# The files that take longest start first: under pytest-xdist (whole files per worker,
# in this order: `make test` passes --no-loadscope-reorder) no worker is then left alone
# with a long file at the end. Measured with `pytest --durations=0` (docs/benchmarks.md);
# the order matters only for wall time. The second worker starts with a long file that
# needs no Prefect server: while the first migrates the suite's database (~13 s on one
# core, made once, which the second would otherwise wait for), it has work of its own.
LONGEST_FIRST = ("test_captions.py", "test_cpu_independence.py", "test_interrupts.py",
                 "test_deployment.py", "test_clipseg.py", "test_cli.py", "test_rerun_property.py",
                 "test_runners.py", "test_bad_records.py", "test_train_errors.py", "test_train_runs.py",
                 "test_lut_library.py", "test_train_lifetime.py", "test_resume.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: file order kept


@pytest.fixture(scope="session")
def prefect_server(migrated_prefect_db, tmp_path_factory):
    """One local Prefect server for every in-process flow run of the suite; yields its API
    URL so subprocesses can use it too. It starts on a copy of the migrated database
    (prefect_test_harness would create and migrate a fresh one: ~15 s of CPU per xdist
    worker), in a home of its own: CLI subprocesses that start their own server use the
    suite's PREFECT_HOME, which gets the migrated database too (tests that need no server
    do not wait for one). PREFECT_API_URL stays out of os.environ, as the harness left it:
    a subprocess talks to this server only when its test says so."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.local_server import temporary_server

    seed_prefect_home(_HOME, migrated_prefect_db)
    home = seed_prefect_home(tmp_path_factory.mktemp("suite-server"), migrated_prefect_db)
    with temporary_server(home) as url, temporary_settings(updates={PREFECT_API_URL: url}):
        yield url


def made_once(tmp_path_factory, name: str, make):
    """What ``make(folder)`` returns (JSON), made once per test session even when
    pytest-xdist runs several workers: the first worker to take the lock makes it in a
    folder beside the workers' own, the others wait and read the same result."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent   # shared by the workers of this run
    folder, made = root / f"made-{name}", root / f"made-{name}.json"
    with open(root / f"made-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not made.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            made.write_text(json.dumps(make(folder)))
    return json.loads(made.read_text())


def _migrated_prefect_db(folder: Path) -> str:
    """A PREFECT_HOME whose SQLite database a temporary server has created and migrated
    (then stopped): a server started on a copy comes up in ~5 s instead of ~16 s."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(folder)
    subprocess.run([sys.executable, "-c", "from flows.local_server import prefect_api\n"
                    "with prefect_api():\n    pass"], cwd=REPO, env=env, check=True, timeout=300)
    return str(folder)


@pytest.fixture(scope="session")
def migrated_prefect_db(tmp_path_factory) -> Path:
    return Path(made_once(tmp_path_factory, "prefect-db", _migrated_prefect_db))


def seed_prefect_home(home: Path, template: Path) -> Path:
    """``home`` holding a copy of the migrated database (and nothing else: tests look for
    the server log a CLI leaves there)."""
    home.mkdir(parents=True, exist_ok=True)
    for db in template.glob("prefect.db*"):
        shutil.copyfile(db, home / db.name)
    return home


@pytest.fixture
def prefect_home(migrated_prefect_db, tmp_path) -> Path:
    """A fresh PREFECT_HOME for a CLI that starts its own server, its database migrated."""
    return seed_prefect_home(tmp_path / "prefect-home", migrated_prefect_db)


def wait_until(predicate, timeout: float, what: str, every: float = 0.2):
    """``predicate()``'s first true value within ``timeout`` seconds, else a failure naming
    ``what`` was awaited."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def build(out_dir: Path, *overrides: str, config: Path = SAMPLE_CONFIG) -> dict:
    from flows.build_dataset import build_dataset

    return build_dataset(config=str(config), out_dir=str(out_dir), overrides=list(overrides))


@pytest.fixture(scope="session")
def sample_dataset(prefect_server, tmp_path_factory) -> Path:
    """The bundled sample, built once with the default config (read-only for tests)."""
    def make(folder: Path) -> str:
        build(folder / "out")
        return str(folder / "out")

    return Path(made_once(tmp_path_factory, "sample", make))


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Tiny random BLIP and CLIP models saved as local folders (two CLIPs differing by seed)."""
    from model_fixtures import make_blip, make_clip

    def make(root: Path) -> dict:
        return {"blip": str(make_blip(root / "blip")), "clip": make_clip(root / "clip"),
                "clip2": make_clip(root / "clip2", seed=1)}

    return made_once(tmp_path_factory, "models", make)


@pytest.fixture(scope="session")
def clipseg(tmp_path_factory) -> Path:
    """A tiny random CLIPSeg (model + processor) saved as a local folder."""
    from model_fixtures import make_clipseg

    return Path(made_once(tmp_path_factory, "clipseg", lambda root: str(make_clipseg(root / "clipseg"))))


def captions_on(models, clip="clip", *extra):
    """Build overrides that caption with the tiny models."""
    return ["captions.enabled=true", f"captions.blip_model={models['blip']}",
            f"captions.clip_model={models[clip]}", "captions.workers=2", *extra]


@pytest.fixture(scope="session")
def captioned(models, prefect_server, tmp_path_factory):
    """The sample built with captions on (tiny models): rows carry clip_* embeddings."""
    def make(folder: Path) -> str:
        build(folder / "out", *captions_on(models))
        return str(folder / "out")

    return Path(made_once(tmp_path_factory, "captioned", make))


@pytest.fixture(scope="session")
def few_photos(tmp_path_factory) -> Path:
    """The sample's annotations with the training split cut to its first two photos (all
    their phrases): for the kill and interrupt tests, whose builds (composites_per_task
    raised, so that a shard is long enough to be caught) need one shard in progress, not
    every photo of the split built three times."""
    src = REPO / "sample_data" / "VGPhraseCut_v0"
    dest = tmp_path_factory.mktemp("few-photos") / "VGPhraseCut_v0"
    shutil.copytree(src, dest)
    tasks = json.loads((src / "refer_train.json").read_text())
    keep = sorted({t["image_id"] for t in tasks})[:2]
    (dest / "refer_train.json").write_text(json.dumps([t for t in tasks if t["image_id"] in keep]))
    return dest


@pytest.fixture
def sample_copy(sample_dataset, tmp_path) -> Path:
    """A private copy of the built sample, for tests that modify it."""
    dest = tmp_path / "out"
    shutil.copytree(sample_dataset, dest)
    return dest


def make_task(**changes) -> dict:
    """A valid VGPhraseCut task on image 1 (10x10), with ``changes`` applied."""
    t = {"task_id": "1__10", "image_id": 1, "ann_ids": [10],
         "instance_boxes": [[0.0, 0.0, 5.0, 5.0]], "Polygons": [[[[0.0, 0.0], [5.0, 0.0], [5.0, 5.0]]]],
         "phrase": "red ball", "phrase_structure": {"name": "ball", "attributes": ["red"],
                                                     "relation_ids": [], "relation_descriptions": [],
                                                     "type": "attribute"}}
    t.update(changes)
    return t


def shard_bytes(out_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out_dir)): p.read_bytes()
            for p in sorted((out_dir / "data").rglob("*.parquet"))}


def rewrite_shard(root: Path, rel: str, table) -> None:
    """Write ``table`` (an Arrow table, or raw bytes) as shard ``rel`` and update the
    manifest's size and sha256 for it, as a rebuild would (the training loader refuses a
    shard the manifest does not describe)."""
    import pyarrow.parquet as pq

    if isinstance(table, bytes):
        (root / rel).write_bytes(table)
    else:
        pq.write_table(table, root / rel)
    data = (root / rel).read_bytes()
    manifest = json.loads((root / "_manifest.json").read_text())
    for shard in manifest["shards"]:
        if shard["path"] == rel:
            shard.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (root / "_manifest.json").write_text(json.dumps(manifest))


IHARMONY4_LETTER = {"HAdobe5k": "a", "HCOCO": "c", "HFlickr": "f", "Hday2night": "d"}


def make_iharmony4(root: Path, sample_dataset: Path, n: int = 6, split: str = "test",
                   subs: tuple[str, str] = ("HFlickr", "HCOCO")) -> list[str]:
    """An iHarmony4-shaped folder of the sample's first ``n`` training rows (its shards
    in order), alternating between two sub-datasets (row i from photo 100 + i); returns
    the names listed in ``IHD_<split>.txt``."""
    import pyarrow.parquet as pq

    shards = sorted((sample_dataset / "data" / "train").glob("*.parquet"))
    rows = [r for shard in shards for r in pq.read_table(shard).to_pylist()][:n]
    assert len(rows) == n, f"the sample's training split has {len(rows)} rows, under {n}"
    names = []
    for i, row in enumerate(rows):
        sub = subs[i % 2]
        photo = f"{IHARMONY4_LETTER[sub]}{100 + i}"   # as iHarmony4: c<COCO id>, f..., a..., d...
        for folder in ("composite_images", "masks", "real_images"):
            (root / sub / folder).mkdir(parents=True, exist_ok=True)
        (root / sub / "composite_images" / f"{photo}_{i}_1.jpg").write_bytes(row["composite"])
        (root / sub / "masks" / f"{photo}_{i}.png").write_bytes(row["mask"])
        (root / sub / "real_images" / f"{photo}.jpg").write_bytes(row["target"])
        names.append(f"{sub}/composite_images/{photo}_{i}_1.jpg")
    (root / f"IHD_{split}.txt").write_text("\n".join(names) + "\n")
    return names
