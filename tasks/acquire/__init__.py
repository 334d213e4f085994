"""Acquisition: takes a config and gives the annotation table (``annotations``, read
from VGPhraseCut's JSON in a stream by ``json_stream``, fetched by
``annotation_fetch``) and the photos it names under ``images/`` with one ledger row
each (``downloader`` over ``image_sources`` and ``http_fetch``; ``ledger``), resumable
after a kill. ``images`` decodes and resizes them; ``sample_photos`` supplies the bundled
sample's photos from installed packages."""
