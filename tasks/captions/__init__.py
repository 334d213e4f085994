"""Captions and CLIP embeddings: BLIP candidates re-ranked by CLIP, per image; CLIP text
embeddings per phrase. ``models`` finds and identifies the weights, ``engine`` runs them,
``store`` keeps the parts, ``stage`` brings a part up to date, ``plan`` ties parts to
the shard plan."""
