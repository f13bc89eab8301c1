"""Collectors: one module per source; each yields contract records (see pipeline.records)."""
