"""gpuledger: GPU telemetry -> Kafka -> Parquet lake -> DuckDB reports and voucher audits.

This package holds only the command line and the local Kafka runner; the logic lives in
``collectors``, ``pipeline`` and ``warehouse``.
"""

__version__ = "0.1.0"
