"""Old import paths of moved modules, kept for one release.

``import tasks.realism`` (the path before `tasks/` was split into phases) still gives the
module, now ``tasks.synthesize.realism``, the very same object, with a FutureWarning
naming the new place. The next release removes the old paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, moves: dict[str, str]):
        self.moves = moves

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.moves:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        new = self.moves[spec.name]
        warnings.warn(f"{spec.name} has moved to {new}; the old path goes in the next release",
                      FutureWarning, stacklevel=3)
        return importlib.import_module(new)

    def exec_module(self, module):
        pass  # the module under its new name is already executed


def keep_old_paths(moves: dict[str, str]) -> None:
    """Let each old module name in ``moves`` import as its new one."""
    if not any(isinstance(f, _Alias) and f.moves is moves for f in sys.meta_path):
        sys.meta_path.append(_Alias(moves))
