"""Prefect flows (``build-dataset``) and the ``phraseharmony`` CLI. No image logic here."""
