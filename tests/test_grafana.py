"""The Grafana dashboards and provisioning are consistent (their panels' queries are run
against a real Prometheus in tests/integration/test_prometheus.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRAFANA = REPO / "gpuledger" / "deploy" / "grafana"


def dashboards() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))]


def test_panels_are_laid_out_and_use_the_provisioned_datasource() -> None:
    datasource = (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    uid = re.search(r"^\s*uid:\s*(\S+)", datasource, re.M)
    assert uid is not None
    dashes = dashboards()
    assert dashes
    for dash in dashes:
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{dash['uid']}: duplicate panel ids"
        cells: set[tuple[int, int]] = set()
        for p in dash["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
            covered = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not covered & cells, f"{p['title']} overlaps another panel"
            cells |= covered
            if p["type"] == "row":
                continue
            assert p["datasource"]["uid"] == uid[1]
            assert p["targets"], p["title"]
            for t in p["targets"]:
                assert t["datasource"]["uid"] == uid[1] and t["expr"].strip()


def test_dashboard_provider_points_where_compose_mounts_the_dashboards() -> None:
    provider = (GRAFANA / "provisioning" / "dashboards" / "gpuledger.yml").read_text()
    path = re.search(r"^\s*path:\s*(\S+)", provider, re.M)
    assert path is not None
    compose = (REPO / "docker-compose.yml").read_text()
    assert f"./gpuledger/deploy/grafana/dashboards:{path[1]}:ro" in compose
    assert "./gpuledger/deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in compose
