"""Programme effectiveness on a hand-built lake: before/after rates, subsidised share,
concentration and claim delay, every figure computed by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.entity_import import import_files
from pipeline.records import ALLOCATION, GPU_SAMPLE, INVENTORY, coerce
from pipeline.write import write_records
from warehouse.vouchers.attribution import open_audit
from warehouse.vouchers.effectiveness import effectiveness, gini, top_share

H = 3_600_000
MAR = 1772294400000  # 2026-03-01T00:00+08:00
APR = 1774972800000  # 2026-04-01T00:00+08:00
MAY = 1777564800000  # 2026-05-01T00:00+08:00
JUN = 1780243200000
JUL = 1782835200000
GPUS = ["g0", "g1", "g2", "g3"]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def test_gini_and_top_share() -> None:
    assert gini([1, 2, 3, 4]) == pytest.approx(0.25)
    assert gini([5, 5, 5]) == pytest.approx(0.0)
    assert gini([]) is None
    assert top_share(list(range(1, 13)), k=10) == pytest.approx((78 - 3) / 78)


def write_lake(lake: Path, tmp: Path) -> None:
    inv = {"datacentre": "dc1", "cluster": "c1", "node": "n1", "valid_from": MAR, "valid_to": JUL}
    write_records(
        lake, INVENTORY, [coerce(INVENTORY, {**inv, "gpu_count": 4, "source": "t"})], "inv"
    )
    # (allocation, tenant, start): 4 GPUs for 24 h each; tX before the programme, t1-t3 after
    spans = [("a0", "tX", APR + 24 * H), ("a1", "t1", MAY), ("a2", "t2", MAY + 24 * H)]
    spans.append(("a3", "t3", MAY + 48 * H))
    allocs, samples = [], []
    for aid, tenant, s in spans:
        allocs.append(
            coerce(
                ALLOCATION,
                {
                    "allocation_id": aid,
                    "datacentre": "dc1",
                    "cluster": "c1",
                    "tenant_id": tenant,
                    "event_ts": s + 24 * H,
                    "gpu_count": 4.0,
                    "gpu_uuids": GPUS,
                    "start": s,
                    "end": s + 24 * H,
                    "state": "completed",
                    "source": "t",
                },
            )
        )
        for g in GPUS:
            for h in range(24):
                samples.append(
                    coerce(
                        GPU_SAMPLE,
                        {
                            "ts": s + h * H,
                            "interval_s": 3600.0,
                            "datacentre": "dc1",
                            "cluster": "c1",
                            "node": "n1",
                            "gpu_uuid": g,
                            "util": 0.5,
                            "source": "t",
                        },
                    )
                )
    write_records(lake, ALLOCATION, allocs, "a")
    write_records(lake, GPU_SAMPLE, samples, "s")
    entities: dict[str, list[dict[str, Any]]] = {
        "programme": [
            {
                "programme_id": "P",
                "issuer": "Shanghai",
                "region": "Shanghai",
                "budget_cny": 1e6,
                "max_coverage": 0.8,
                "valid_from": iso(MAY),
                "valid_to": iso(MAY + 365 * 24 * H),
                "eligible_tenant_types": ["sme"],
                "eligible_datacentres": ["dc1"],
                "price_cap_cny_per_gpu_hour": None,
            }
        ],
        "tenant": [
            {"tenant_id": t, "name": t, "tenant_type": "sme", "region": r}
            for t, r in (("t1", "Shanghai"), ("t2", "Shanghai"), ("t3", "Sichuan"), ("tX", "X"))
        ],
        "voucher": [
            {
                "voucher_id": f"v{t}",
                "programme_id": "P",
                "tenant_id": t,
                "face_value_cny": 1000.0,
                "issued_at": iso(MAY),
                "expires_at": iso(JUL),
            }
            for t in ("t1", "t2", "t3")
        ],
        "claim": [
            {
                "claim_id": f"c{t}",
                "voucher_id": f"v{t}",
                "tenant_id": t,
                "datacentre": "dc1",
                "period_start": iso(MAY),
                "period_end": iso(JUN),
                "allocation_ids": None,
                "claimed_gpu_hours": 96.0,
                "unit_price_cny": 10.0,
                "invoice_cny": 960.0,
                "subsidy_cny": subsidy,
                "submitted_at": iso(JUN + delay * 24 * H),
            }
            for t, subsidy, delay in (("t1", 100.0, 10), ("t2", 200.0, 20), ("t3", 300.0, 40))
        ],
    }
    files = {}
    for name, rows in entities.items():
        path = tmp / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        files[name] = [path]
    import_files(lake, files)


def test_effectiveness_by_hand(lake: Path, tmp_path: Path) -> None:
    write_lake(lake, tmp_path)
    report = effectiveness(open_audit(lake), "P", months=2)
    assert report["start"] == "2026-05-01" and report["datacentres"] == ["dc1"]
    assert report["window"] == ["2026-03-01", "2026-07-01"]
    assert [r["period"] for r in report["monthly"]] == ["2026-03", "2026-04", "2026-05", "2026-06"]
    assert [r["phase"] for r in report["monthly"]] == ["before", "before", "after", "after"]
    cap = 4 * (31 + 30) * 24  # March + April = May + June = 61 days of 4 GPUs
    before, after = report["phases"]
    assert (before["phase"], after["phase"]) == ("before", "after")
    assert before["capacity_gpu_h"] == pytest.approx(cap)
    assert before["allocation_rate"] == pytest.approx(96 / cap)
    assert after["allocation_rate"] == pytest.approx(288 / cap)
    assert after["utilisation"] == pytest.approx(144 / cap)
    assert report["subsidised_share"] == pytest.approx(288 / cap)
    tenant = report["concentration"]["tenant"]
    assert tenant["gini"] == pytest.approx(2 / 9) and tenant["top10_share"] == pytest.approx(1)
    assert tenant["subsidy_cny"] == {"t3": 300.0, "t2": 200.0, "t1": 100.0}
    region = report["concentration"]["region"]
    assert region["subsidy_cny"] == {"Shanghai": 300.0, "Sichuan": 300.0}
    assert region["gini"] == pytest.approx(0.0)
    assert report["median_claim_delay_days"] == pytest.approx(20.0)
    assert report["subsidy_cny"] == 600.0 and report["claims"] == 3


def test_unknown_programme(lake: Path, tmp_path: Path) -> None:
    write_lake(lake, tmp_path)
    with pytest.raises(ValueError, match="no programme 'nope'"):
        effectiveness(open_audit(lake), "nope")
