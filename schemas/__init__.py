"""Data contracts: the run config, the shard row schema, manifest and ledger formats."""
