"""Finding and loading the captioner (BLIP, transformers) and the re-ranker (CLIP, open_clip).

Weights are looked up locally only: a folder, or the Hugging Face / open_clip caches.
When they are missing the stage stops before any work with one message naming the
model, where we looked and the command that fetches it (never a hub lookup that retries
for minutes offline, never open_clip's silently random model). Each model gets an
identity (id, revision or a digest of its weight files) that the captions store
records, so new weights recompute exactly what they feed.
"""

from __future__ import annotations

import hashlib
import os
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


@lru_cache(maxsize=16)
def _files_digest(paths: tuple[Path, ...]) -> str:
    """sha256 prefix over weight files (content, not names): new weights, new identity."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
    return h.hexdigest()[:12]


def resolve_blip(spec: str) -> BlipSource:
    folder = Path(spec).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelMissing(f"BLIP model {spec}: the folder has no config.json (want a folder "
                               "written by save_pretrained with model and processor)")
        weights = tuple(sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin")))
        if not weights:
            raise ModelMissing(f"BLIP model {spec}: no weight files (*.safetensors) in the folder")
        return BlipSource(spec, folder, f"{folder.name}@{_files_digest(weights)}")
    repo_id, _, revision = spec.partition("@")
    if repo_id.count("/") != 1 or spec.startswith(("/", ".", "~")):
        raise ModelMissing(f"BLIP model {spec}: not a folder and not a Hugging Face id (ORG/NAME)")
    path = _cached_snapshot(repo_id, revision or None)
    if path is None or not (path / "config.json").is_file():
        raise ModelMissing(f"BLIP model {spec}: not in the Hugging Face cache ({_hf_cache_dir()}); "
                           f"{FETCH_HINT}, or set captions.blip_model to a save_pretrained folder")
    return BlipSource(spec, path, f"{repo_id}@{path.name}")


def resolve_clip(spec: str) -> ClipSource:
    if spec.startswith("local-dir:"):
        folder = Path(spec.removeprefix("local-dir:")).expanduser()
        weights = [folder / n for n in CLIP_WEIGHT_NAMES if (folder / n).is_file()]
        if not (folder / "open_clip_config.json").is_file() or not weights:
            raise ModelMissing(f"CLIP model {spec}: want {folder}/open_clip_config.json and "
                               f"{' or '.join(CLIP_WEIGHT_NAMES)}")
        return ClipSource(spec, f"local-dir:{folder}", None, {}, False,
                          f"{folder.name}@{_files_digest(tuple(weights))}")
    if spec.startswith("hf-hub:"):
        repo_id = spec.removeprefix("hf-hub:")
        path = _cached_snapshot(repo_id, None)
        if path is None or not (path / "open_clip_config.json").is_file():
            raise ModelMissing(f"CLIP model {spec}: not in the Hugging Face cache ({_hf_cache_dir()}); "
                               f"{FETCH_HINT}")
        # A cached snapshot is a local-dir: loading it so never asks the hub.
        return ClipSource(spec, f"local-dir:{path}", None, {}, False, f"{repo_id}@{path.name}")
    name, sep, tag = spec.partition("/")
    import open_clip

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


def check_models(captions_cfg) -> list[str]:
    """One line per configured model that is missing (empty: all present)."""
    problems = []
    for resolve, spec in ((resolve_blip, captions_cfg.blip_model), (resolve_clip, captions_cfg.clip_model)):
        try:
            resolve(spec)
        except ModelMissing as exc:
            problems.append(str(exc))
    return problems




def download_models(captions_cfg) -> list[str]:
    """Fetch the configured models into the Hugging Face cache (or ~/.cache/clip);
    returns one line per model saying what happened. Needs the internet."""
    from huggingface_hub import snapshot_download

    lines = []
    blip = captions_cfg.blip_model
    if Path(blip).expanduser().is_dir():
        lines.append(f"BLIP {blip}: a local folder, nothing to fetch")
    else:
        repo_id, _, revision = blip.partition("@")
        path = snapshot_download(repo_id, revision=revision or None)
        lines.append(f"BLIP {blip}: in {path}")
    clip = captions_cfg.clip_model
    if clip.startswith("local-dir:"):
        lines.append(f"CLIP {clip}: a local folder, nothing to fetch")
    elif clip.startswith("hf-hub:"):
        lines.append(f"CLIP {clip}: in {snapshot_download(clip.removeprefix('hf-hub:'))}")
    else:
        import open_clip

        name, _, tag = clip.partition("/")
        cfg = open_clip.get_pretrained_cfg(name, tag)
        if not cfg:
            raise ModelMissing(f"CLIP model {clip}: open_clip has no pretrained tag {tag!r} for {name}")
        lines.append(f"CLIP {clip}: in {open_clip.download_pretrained(cfg)}")
    return lines
