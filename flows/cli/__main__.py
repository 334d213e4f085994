"""``python -m flows.cli``: the same as the ``phraseharmony`` command."""

from flows.cli.app import main

main()
