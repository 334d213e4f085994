"""Publishing: takes the synthesized rows and gives the dataset on disk: Parquet shards
with their done-markers (``shards``), what is current and what must run
(``build_state``), the manifest (``manifest``), the dataset card and preview (``card``,
``card_text``), the measured yield (``yield_report``), and the iHarmony4-layout export
(``export_iharmony4``)."""
