"""The operator surface: the Prometheus exporter and fleet windows, and the alerts."""
