"""Run folders: config, versions, DuckDB results, checkpoints."""
