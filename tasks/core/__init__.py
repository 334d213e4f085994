"""What every phase shares, and nothing phase-specific: atomic writes, folder locks and
digests (``files``), worker lifetimes (``lifecycle``), the code version stamped into
outputs (``versioning``), CPU-independent maths (``fixedmath``, ``linalg3``), the
torchvision guard (``torch_compat``), and the shard plan (``shard_plan``): which
phrases go into which shard, the digest of everything a shard is made from, and the
done-markers that let a rerun skip what is current. Takes a config; gives plans."""
