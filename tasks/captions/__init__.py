"""Captions: takes the acquired photos and the phrases of the shard plan and gives, per
shard, a caption part (BLIP candidates re-ranked by CLIP, the CLIP image embedding) and a
phrase-embedding part, each with a done-marker. ``models`` finds and identifies the
weights, ``engine`` runs them (+ ``decoder``, ``vision``), ``prefetch`` feeds them,
``store`` keeps the parts, ``stage`` brings a part up to date, ``plan`` ties parts to the
shard plan, ``join`` hands a shard its captions."""
