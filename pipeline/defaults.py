"""Defaults shared by the pipeline, the warehouse and the command line."""

from __future__ import annotations

DEFAULT_TZ = "Asia/Shanghai"
"""The data centres' local time zone when none is given: local dates of reports and audits,
naive times of the Helios trace."""
