"""Pipeline stages in flow order: records (the contract), wire, validate, dedup, write, ingest."""
