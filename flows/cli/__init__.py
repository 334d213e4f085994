"""The ``phraseharmony`` command: ``app`` (build, inspect, preview, dry runs) and one
module per command group (``download``, ``captions``, ``luts``, ``train``,
``harmonize``, ``export``)."""

from flows.cli.app import app, main

__all__ = ["app", "main"]
