"""Utilisation reports over the catalogue: periods, groupings, rendering (table, CSV, JSON)
and ad-hoc SQL."""
