"""Prefect flows (``build-dataset``) and the ``phraseharmony`` CLI. No image logic here."""

from tasks.core.moved import keep_old_paths

# The CLI modules' names before flows/cli/, for one release.
MOVED = {f"flows.cli_{name}": f"flows.cli.{name}"
         for name in ("captions", "download", "export", "harmonize", "luts", "train")}
keep_old_paths(MOVED)
