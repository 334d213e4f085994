"""Finding and loading the captioner (BLIP, transformers) and the re-ranker (CLIP, open_clip).

Weights are looked up locally only: a folder, or the Hugging Face / open_clip caches.
When they are missing the stage stops before any work with one message naming the
model, where we looked and the command that fetches it (never a hub lookup that retries
for minutes offline, never open_clip's silently random model); a truncated weights file,
a BLIP folder without its tokenizer or processor, or a damaged JSON file is named the same
way. Each model gets an identity (id and revision, or a digest of every file of its
folder: weights, configs, tokenizer, processor, generation settings) that the captions
store records, so any change to what a model computes recomputes exactly what it feeds.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from schemas.errors import UserError

FETCH_HINT = "run `phraseharmony models download --config <config>` on a machine with internet"
CLIP_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class ModelMissing(UserError):
    """A configured model's weights are not on this machine."""


@dataclass(frozen=True)
class BlipSource:
    """A transformers model (BLIP, CLIPSeg): where its save_pretrained files are."""

    spec: str          # as configured
    path: Path         # folder with config.json, weights, processor files
    identity: str      # "id@revision" or "folder@sha256-prefix"


@dataclass(frozen=True)
class ClipSource:
    spec: str
    name: str                    # open_clip architecture (or local-dir:/hf-hub: spec)
    weights: Path | None         # file to load (None for local-dir:, which finds its own)
    preprocess: dict             # mean, std, interpolation, resize_mode from the tag
    quick_gelu: bool
    identity: str


def _hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _cached_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The local snapshot of a Hugging Face repo (no network), or None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None


# Files that describe a model folder but change no output (a README edit recomputes nothing).
_NOT_INPUTS = ("*.md", "LICENSE*", "NOTICE*")
# What a BLIP folder needs besides config.json and weights: the tokenizer and the processor.
BLIP_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
BLIP_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
CLIP_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


def folder_digest(folder: Path) -> str:
    """sha256 prefix over every file of a model folder, names and contents: weights, but
    also the configs, tokenizer, processor and generation settings, each of which changes
    the captions or embeddings (hidden folders such as a download's .cache and
    documentation left out)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                   and not any(p.match(pattern) for pattern in _NOT_INPUTS))
    stats = tuple((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _digest_files(folder, stats)


@lru_cache(maxsize=16)
def _digest_files(folder: Path, stats: tuple) -> str:
    # Keyed by each file's size and mtime too: an edited file in a long-lived process is new.
    h = hashlib.sha256()
    for name, size, _mtime in stats:
        h.update(f"{name}\0{size}\0".encode())
        with open(folder / name, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
    return h.hexdigest()[:12]


def check_weights(path: Path, what: str) -> None:
    """A weights file that is whole: a safetensors file as long as its header says, a
    torch zip archive with its central directory (a truncated copy fails here in
    milliseconds, not in the model loader after ingest)."""
    size = path.stat().st_size
    if path.suffix == ".safetensors":
        try:
            with open(path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                if not 0 < n <= min(size - 8, 100 << 20):
                    raise ValueError(f"header length {n} in a file of {size} bytes")
                header = json.loads(f.read(n))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ModelMissing(f"{what}: {path} is not a readable safetensors file ({exc}); "
                               f"download it again") from None
        if size != 8 + n + end:
            raise ModelMissing(f"{what}: {path} is truncated or damaged ({size} bytes, its header "
                               f"says {8 + n + end}); download it again")
    elif path.suffix in (".bin", ".pt", ".pth"):
        try:
            with zipfile.ZipFile(path):
                pass
        except (zipfile.BadZipFile, OSError) as exc:
            raise ModelMissing(f"{what}: {path} is truncated or damaged ({exc}); download it again") from None


def _check_json(folder: Path, what: str) -> None:
    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelMissing(f"{what}: {path} is not valid JSON ({exc})") from None


def _check_hf_folder(folder: Path, what: str, needs: tuple[tuple[tuple[str, ...], str], ...]) -> None:
    """A save_pretrained folder that will load: config.json, whole weights, valid JSON and
    one file of each group in ``needs`` (e.g. the tokenizer's)."""
    if not (folder / "config.json").is_file():
        raise ModelMissing(f"{what}: the folder has no config.json (want a folder "
                           "written by save_pretrained with model and processor)")
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not weights:
        raise ModelMissing(f"{what}: no weight files (*.safetensors) in the folder")
    for names, kind in needs:
        if not any((folder / n).is_file() for n in names):
            raise ModelMissing(f"{what}: no {kind} in {folder} (want {' or '.join(names)}; save the "
                               "processor beside the model with save_pretrained)")
    _check_json(folder, what)
    for path in weights:
        check_weights(path, what)


def _check_blip_folder(folder: Path, spec: str) -> None:
    _check_hf_folder(folder, f"BLIP model {spec}", ((BLIP_TOKENIZER_FILES, "tokenizer"),
                                                    (BLIP_PROCESSOR_FILES, "image processor")))


def _resolve_hf(spec: str, what: str, check, hint: str) -> tuple[Path, str]:
    """(folder, identity) of a save_pretrained folder or a cached Hugging Face id[@rev]."""
    folder = Path(spec).expanduser()
    if folder.is_dir():
        check(folder, spec)
        return folder, f"{folder.name}@{folder_digest(folder)}"
    repo_id, _, revision = spec.partition("@")
    if repo_id.count("/") != 1 or spec.startswith(("/", ".", "~")):
        raise ModelMissing(f"{what} {spec}: not a folder and not a Hugging Face id (ORG/NAME)")
    path = _cached_snapshot(repo_id, revision or None)
    if path is None or not (path / "config.json").is_file():
        raise ModelMissing(f"{what} {spec}: not in the Hugging Face cache ({_hf_cache_dir()}); "
                           f"{FETCH_HINT}, or {hint}")
    check(path, spec)
    return path, f"{repo_id}@{path.name}"


def resolve_blip(spec: str) -> BlipSource:
    path, identity = _resolve_hf(spec, "BLIP model", _check_blip_folder,
                                 "set captions.blip_model to a save_pretrained folder")
    return BlipSource(spec, path, identity)


def _check_clipseg_folder(folder: Path, spec: str) -> None:
    _check_hf_folder(folder, f"CLIPSeg model {spec}", ((CLIP_TOKENIZER_FILES, "tokenizer"),
                                                       (BLIP_PROCESSOR_FILES, "image processor")))


def resolve_clipseg(spec: str) -> BlipSource:
    """CLIPSeg (``model.clipseg`` of a training config): a save_pretrained folder of
    ``CLIPSegForImageSegmentation`` + ``CLIPSegProcessor``, or a cached id[@rev]."""
    path, identity = _resolve_hf(spec, "CLIPSeg model", _check_clipseg_folder,
                                 "set model.clipseg to a save_pretrained folder")
    return BlipSource(spec, path, identity)


def _open_clip():
    """open_clip, imported after the torchvision shim (``tasks.core.torch_compat``)."""
    import tasks.core.torch_compat  # noqa: F401

    return importlib.import_module("open_clip")


def resolve_clip(spec: str) -> ClipSource:
    if spec.startswith("local-dir:"):
        folder = Path(spec.removeprefix("local-dir:")).expanduser()
        weights = [folder / n for n in CLIP_WEIGHT_NAMES if (folder / n).is_file()]
        if not (folder / "open_clip_config.json").is_file() or not weights:
            raise ModelMissing(f"CLIP model {spec}: want {folder}/open_clip_config.json and "
                               f"{' or '.join(CLIP_WEIGHT_NAMES)}")
        _check_json(folder, f"CLIP model {spec}")
        check_weights(weights[0], f"CLIP model {spec}")
        return ClipSource(spec, f"local-dir:{folder}", None, {}, False,
                          f"{folder.name}@{folder_digest(folder)}")
    if spec.startswith("hf-hub:"):
        repo_id = spec.removeprefix("hf-hub:")
        path = _cached_snapshot(repo_id, None)
        if path is None or not (path / "open_clip_config.json").is_file():
            raise ModelMissing(f"CLIP model {spec}: not in the Hugging Face cache ({_hf_cache_dir()}); "
                               f"{FETCH_HINT}")
        _check_json(path, f"CLIP model {spec}")
        for name in CLIP_WEIGHT_NAMES:
            if (path / name).is_file():
                check_weights(path / name, f"CLIP model {spec}")
                break
        # A cached snapshot is a local-dir: loading it so never asks the hub.
        return ClipSource(spec, f"local-dir:{path}", None, {}, False, f"{repo_id}@{path.name}")
    name, sep, tag = spec.partition("/")
    open_clip = _open_clip()

    if not sep or name.replace("/", "-") not in open_clip.list_models():
        raise ModelMissing(f"CLIP model {spec}: want NAME/TAG (an open_clip model and pretrained "
                           "tag, e.g. ViT-L-14/datacomp_xl_s13b_b90k), hf-hub:ORG/REPO or local-dir:DIR")
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        raise ModelMissing(f"CLIP model {spec}: open_clip has no pretrained tag {tag!r} for {name} "
                           f"(known: {', '.join(open_clip.list_pretrained_tags_by_model(name))})")
    weights = _cached_clip_weights(cfg)
    if weights is None:
        raise ModelMissing(f"CLIP model {spec}: weights not in the Hugging Face cache "
                           f"({_hf_cache_dir()}) nor ~/.cache/clip; {FETCH_HINT}")
    check_weights(weights, f"CLIP model {spec}")
    preprocess = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
    return ClipSource(spec, name, weights, preprocess, bool(cfg.get("quick_gelu")),
                      f"{spec}@{weights.parent.name}")


def _cached_clip_weights(cfg: dict) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    hub = cfg.get("hf_hub", "")
    if hub:
        # "org/repo/" means the repo's default weights file; "org/repo/file" that file.
        repo_id, filename = os.path.split(hub)
        names = CLIP_WEIGHT_NAMES if not filename else (filename.rsplit(".", 1)[0] + ".safetensors",
                                                          filename)
        for name in names:
            found = try_to_load_from_cache(repo_id, name)
            if isinstance(found, str):
                return Path(found)
    url = cfg.get("url", "")
    if url:
        local = Path("~/.cache/clip").expanduser() / Path(url).name
        if local.is_file():
            return local
    return None


def check_models(captions_cfg, first_only: bool = False) -> list[str]:
    """One line per configured model that is missing (empty: all present). ``first_only``
    stops at the first: BLIP is checked first, and checking an open_clip NAME/TAG imports
    open_clip (~5 s of CPU), which a build that captions nothing should not pay."""
    problems = []
    for resolve, spec in ((resolve_blip, captions_cfg.blip_model), (resolve_clip, captions_cfg.clip_model)):
        try:
            resolve(spec)
        except ModelMissing as exc:
            problems.append(str(exc))
            if first_only:
                break
    return problems


def captions_enabled(cfg) -> tuple[bool, str]:
    """Whether this run makes captions, and a line saying why (or why not). With
    ``enabled: true`` and weights missing this raises before any work."""
    setting = cfg.captions.enabled
    if setting is False:
        return False, "captions off (captions.enabled: false)"
    # `auto` needs one missing model to decide; `true` names every missing one.
    problems = check_models(cfg.captions, first_only=setting == "auto")
    if not problems:
        return True, f"captions on: BLIP {cfg.captions.blip_model}, CLIP {cfg.captions.clip_model}"
    if setting is True:
        raise ModelMissing("; ".join(problems))
    return False, "captions off (captions.enabled: auto, weights not found): " + "; ".join(problems)


def download_hf(spec: str, what: str) -> str:
    """Fetch a transformers model id[@rev] into the Hugging Face cache (a local folder is
    left as it is); one line saying what happened. Needs the internet."""
    from huggingface_hub import snapshot_download

    if Path(spec).expanduser().is_dir():
        return f"{what} {spec}: a local folder, nothing to fetch"
    repo_id, _, revision = spec.partition("@")
    return f"{what} {spec}: in {snapshot_download(repo_id, revision=revision or None)}"


def download_models(captions_cfg) -> list[str]:
    """Fetch the configured models into the Hugging Face cache (or ~/.cache/clip);
    returns one line per model saying what happened. Needs the internet."""
    from huggingface_hub import snapshot_download

    lines = [download_hf(captions_cfg.blip_model, "BLIP")]
    clip = captions_cfg.clip_model
    if clip.startswith("local-dir:"):
        lines.append(f"CLIP {clip}: a local folder, nothing to fetch")
    elif clip.startswith("hf-hub:"):
        lines.append(f"CLIP {clip}: in {snapshot_download(clip.removeprefix('hf-hub:'))}")
    else:
        open_clip = _open_clip()

        name, _, tag = clip.partition("/")
        cfg = open_clip.get_pretrained_cfg(name, tag)
        if not cfg:
            raise ModelMissing(f"CLIP model {clip}: open_clip has no pretrained tag {tag!r} for {name}")
        lines.append(f"CLIP {clip}: in {open_clip.download_pretrained(cfg)}")
    return lines
