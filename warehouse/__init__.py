"""Warehouse: DuckDB views over the Parquet lake, and the reports built on them."""
