"""The nine audit findings on hand-built cases, each at its boundary and one unit over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.entity_import import import_files
from pipeline.records import ALLOCATION, GPU_SAMPLE, coerce
from pipeline.write import write_records
from warehouse.vouchers.attribution import open_audit
from warehouse.vouchers.audit import FINDINGS, Thresholds, audit, load_thresholds

H = 3_600_000
P0 = 1777564800000  # 2026-05-01T00:00+08:00 (Asia/Shanghai) = 2026-04-30T16:00Z
JUNE = 1780243200000  # 2026-06-01T00:00+08:00


def iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


# allocations of tenant t1 (and tL): (id, datacentre, tenant, gpus, start_h, end_h) from P0
ALLOCS = [
    ("a1", "dc1", "t1", ("g1", "g2"), 24, 34),
    ("a2", "dc1", "t1", ("g1", "g2"), 48, 58),
    ("a3", "dc1", "t1", ("g1", "g2"), 72, 82),
    ("a4", "dc2", "t1", ("h1", "h2"), 24, 34),
    ("aL", "dc1", "tL", ("g3",), 24, 44),
]


def build(
    lake: Path,
    tmp: Path,
    claims: list[dict[str, Any]],
    *,
    util: float = 0.5,
    skip: frozenset[tuple[str, int]] | set[tuple[str, int]] = frozenset(),
    allocs: list[tuple[str, str, str, tuple[str, ...], int, int]] = ALLOCS,
    voucher: dict[str, Any] | None = None,
) -> None:
    records, samples = [], []
    for aid, dc, tenant, gpus, s, e in allocs:
        records.append(
            coerce(
                ALLOCATION,
                {
                    "allocation_id": aid,
                    "datacentre": dc,
                    "cluster": "c1",
                    "tenant_id": tenant,
                    "event_ts": P0 + e * H,
                    "gpu_count": float(len(gpus)),
                    "gpu_uuids": list(gpus),
                    "start": P0 + s * H,
                    "end": P0 + e * H,
                    "state": "completed",
                    "source": "test",
                },
            )
        )
        for g in gpus:
            for h in range(s, e):
                if (g, h) in skip:
                    continue
                samples.append(
                    coerce(
                        GPU_SAMPLE,
                        {
                            "ts": P0 + h * H,
                            "interval_s": 3600.0,
                            "datacentre": dc,
                            "cluster": "c1",
                            "node": "n1",
                            "gpu_uuid": g,
                            "util": util,
                            "source": "test",
                        },
                    )
                )
    write_records(lake, ALLOCATION, records, "alloc")
    write_records(lake, GPU_SAMPLE, samples, "samples")
    year = "2026-01-01T00:00:00+08:00", "2027-01-01T00:00:00+08:00"
    entities: dict[str, list[dict[str, Any]]] = {
        "programme": [
            {
                "programme_id": "P1",
                "issuer": "Shanghai",
                "region": "Shanghai",
                "budget_cny": 1e6,
                "max_coverage": 0.8,
                "valid_from": year[0],
                "valid_to": year[1],
                "eligible_tenant_types": ["sme", "research"],
                "eligible_datacentres": [],
                "price_cap_cny_per_gpu_hour": 20.0,
            },
            {
                "programme_id": "P2",
                "issuer": "Sichuan",
                "region": "Sichuan",
                "budget_cny": 1e6,
                "max_coverage": 0.8,
                "valid_from": year[0],
                "valid_to": year[1],
                "eligible_tenant_types": ["sme"],
                "eligible_datacentres": ["dc1"],
                "price_cap_cny_per_gpu_hour": None,
            },
        ],
        "tenant": [
            {"tenant_id": "t1", "name": "One", "tenant_type": "sme", "region": "Shanghai"},
            {"tenant_id": "tL", "name": "Large", "tenant_type": "large", "region": "Beijing"},
        ],
        "voucher": [
            {
                "voucher_id": "v1",
                "programme_id": "P1",
                "tenant_id": "t1",
                "face_value_cny": 10000.0,
                "issued_at": year[0],
                "expires_at": year[1],
                **(voucher or {}),
            },
            {
                "voucher_id": "v2",
                "programme_id": "P2",
                "tenant_id": "t1",
                "face_value_cny": 10000.0,
                "issued_at": year[0],
                "expires_at": year[1],
            },
            {
                "voucher_id": "vL",
                "programme_id": "P1",
                "tenant_id": "tL",
                "face_value_cny": 10000.0,
                "issued_at": year[0],
                "expires_at": year[1],
            },
        ],
        "claim": claims,
    }
    files = {}
    for name, rows in entities.items():
        path = tmp / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        files[name] = [path]
    import_files(lake, files)


def claim(cid: str = "c1", **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "claim_id": cid,
        "voucher_id": "v1",
        "tenant_id": "t1",
        "datacentre": "dc1",
        "period_start": iso(P0),
        "period_end": iso(JUNE),
        "allocation_ids": ["a1"],
        "claimed_gpu_hours": 20.0,
        "unit_price_cny": 10.0,
        "invoice_cny": 200.0,
        "subsidy_cny": 160.0,
        "submitted_at": iso(JUNE + 10 * 24 * H),
    }
    base.update(kw)
    return base


def run(lake: Path, month: str = "2026-05", tz: str = "Asia/Shanghai", **th: Any) -> dict[str, Any]:
    thresholds = Thresholds(**th) if th else load_thresholds()
    return audit(open_audit(lake), month=month, tz=tz, thresholds=thresholds)


def found(report: dict[str, Any]) -> list[tuple[str, str, float]]:
    return sorted((f["finding"], f["claim_id"], f["cny_at_stake"]) for f in report["findings"])


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    path = tmp_path / "in"
    path.mkdir()
    return path


def test_thresholds_file_documents_the_defaults() -> None:
    assert load_thresholds() == Thresholds()
    assert set(Thresholds().severity) == set(FINDINGS)


def test_clean_claim(lake: Path, tmp: Path) -> None:
    build(lake, tmp, [claim()])
    report = run(lake)
    assert report["findings"] == [] and report["clean"] == ["c1"]
    (prog,) = report["programmes"]
    assert prog["programme_id"] == "P1"
    assert (prog["claims"], prog["claims_clean"], prog["vouchers_redeemed"]) == (1, 1, 1)
    assert prog["metered_gpu_h"] == pytest.approx(20.0)
    assert prog["busy_gpu_h"] == pytest.approx(10.0)
    assert prog["subsidy_per_busy_gpu_h"] == pytest.approx(16.0)


@pytest.mark.parametrize(("claimed", "expect"), [(20.4, []), (20.41, [160 * 0.41 / 20.41])])
def test_over_claim_tolerance(lake: Path, tmp: Path, claimed: float, expect: list[float]) -> None:
    build(lake, tmp, [claim(claimed_gpu_hours=claimed)])
    assert found(run(lake)) == [("OVER_CLAIM", "c1", round(x, 2)) for x in expect]


def test_over_claim_listed_allocation_of_another_tenant(lake: Path, tmp: Path) -> None:
    """Only the claimant's allocations count: listing tL's allocation adds nothing."""
    build(lake, tmp, [claim(allocation_ids=["a1", "aL"], claimed_gpu_hours=40.0)])
    assert found(run(lake)) == [("OVER_CLAIM", "c1", 80.0)]


@pytest.mark.parametrize(("subsidy", "expect"), [(160.0, []), (160.01, [0.01])])
def test_coverage_exceeded(lake: Path, tmp: Path, subsidy: float, expect: list[float]) -> None:
    build(lake, tmp, [claim(subsidy_cny=subsidy)])
    assert found(run(lake)) == [("COVERAGE_EXCEEDED", "c1", x) for x in expect]


@pytest.mark.parametrize(("util", "expect"), [(0.125, []), (0.12, [round(160 * 0.88, 2)])])
def test_idle_subsidised(lake: Path, tmp: Path, util: float, expect: list[float]) -> None:
    build(lake, tmp, [claim()], util=util)
    report = run(lake, idle_efficiency_threshold=0.125)
    assert found(report) == [("IDLE_SUBSIDISED", "c1", x) for x in expect]


def test_no_telemetry_boundary(lake: Path, tmp: Path) -> None:
    half = {("g2", h) for h in range(24, 34)}  # g2 silent: exactly half the GPU-hours covered
    build(lake, tmp, [claim()], skip=half)
    assert found(run(lake)) == []


def test_no_telemetry_below(lake: Path, tmp: Path) -> None:
    silent = {("g2", h) for h in range(24, 34)} | {("g1", 33)}  # 9 of 20 GPU-hours covered
    build(lake, tmp, [claim()], skip=silent)
    report = run(lake)
    assert found(report) == [("NO_TELEMETRY", "c1", 88.0)]
    assert report["findings"][0]["evidence"]["telemetry_share"] == pytest.approx(0.45)


def test_double_claim_two_programmes_overlapping_periods(lake: Path, tmp: Path) -> None:
    first = claim(
        "c1",
        period_end=iso(P0 + 29 * H),
        claimed_gpu_hours=10.0,
        invoice_cny=100.0,
        subsidy_cny=80.0,
        allocation_ids=None,
    )
    second = claim(
        "c2",
        voucher_id="v2",
        period_start=iso(P0 + 27 * H),
        period_end=iso(P0 + 34 * H),
        claimed_gpu_hours=14.0,
        invoice_cny=140.0,
        subsidy_cny=112.0,
        allocation_ids=["a1"],
        submitted_at=iso(JUNE + 11 * 24 * H),
    )
    build(lake, tmp, [first, second])
    report = run(lake)
    # [27h, 29h) x 2 GPUs = 4 of c2's 14 metered GPU-hours were already claimed under P1
    assert found(report) == [("DOUBLE_CLAIM", "c2", round(112 * 4 / 14, 2))]
    evidence = report["findings"][0]["evidence"]
    assert evidence["other_claim_ids"] == ["c1"] and evidence["other_programme_ids"] == ["P1"]
    assert evidence["allocation_ids"] == ["a1"] and evidence["double_gpu_h"] == pytest.approx(4)
    assert report["clean"] == ["c1"]


@pytest.mark.parametrize(("face", "expect"), [(320.0, []), (319.99, [0.01])])
def test_voucher_overspent(lake: Path, tmp: Path, face: float, expect: list[float]) -> None:
    claims = [claim("c1"), claim("c2", allocation_ids=["a2"], submitted_at=iso(JUNE + 11 * 24 * H))]
    build(lake, tmp, claims, voucher={"face_value_cny": face})
    report = run(lake)
    assert found(report) == [("VOUCHER_OVERSPENT", "c2", x) for x in expect]
    for f in report["findings"]:
        assert f["evidence"]["earlier_claim_ids"] == ["c1"]
        assert f["evidence"]["cum_subsidy_cny"] == pytest.approx(320.0)


@pytest.mark.parametrize(("expires", "expect"), [(JUNE, []), (P0 + 15 * 24 * H, [160 * 16 / 31])])
def test_out_of_validity(lake: Path, tmp: Path, expires: int, expect: list[float]) -> None:
    build(lake, tmp, [claim()], voucher={"expires_at": iso(expires)})
    assert found(run(lake)) == [("OUT_OF_VALIDITY", "c1", round(x, 2)) for x in expect]


def test_ineligible_tenant_type_and_datacentre(lake: Path, tmp: Path) -> None:
    large = claim("cL", voucher_id="vL", tenant_id="tL", allocation_ids=["aL"])
    elsewhere = claim("c4", voucher_id="v2", datacentre="dc2", allocation_ids=["a4"])
    build(lake, tmp, [large, elsewhere])
    assert found(run(lake)) == [("INELIGIBLE", "c4", 160.0), ("INELIGIBLE", "cL", 160.0)]


@pytest.mark.parametrize(("price", "expect"), [(20.0, []), (20.01, [160 * 0.01 / 20.01])])
def test_price_above_cap(lake: Path, tmp: Path, price: float, expect: list[float]) -> None:
    build(lake, tmp, [claim(unit_price_cny=price)])
    assert found(run(lake)) == [("PRICE_ANOMALY", "c1", round(x, 2)) for x in expect]


def test_price_far_above_market_median(lake: Path, tmp: Path) -> None:
    claims = [
        claim("c1", voucher_id="v2"),
        claim("c2", voucher_id="v2", allocation_ids=["a2"]),
        claim("c3", voucher_id="v2", allocation_ids=["a3"], unit_price_cny=25.0),
    ]
    build(lake, tmp, claims)
    # P2 has no cap; median 10, factor 2 -> limit 20; (25 - 20) / 25 of the subsidy
    assert found(run(lake)) == [("PRICE_ANOMALY", "c3", 32.0)]
    assert found(run(lake, price_anomaly_factor=2.5)) == []


def test_claim_crossing_month_boundary_clipped_in_local_time(lake: Path, tmp: Path) -> None:
    # a5 runs 2026-05-31 20:00 to 2026-06-01 04:00 Shanghai; the claim starts at local midnight
    a5 = ("a5", "dc1", "t1", ("g1", "g2"), 30 * 24 + 20, 31 * 24 + 4)
    june = claim(
        "c6",
        period_start=iso(JUNE),
        period_end=iso(JUNE + 30 * 24 * H),
        allocation_ids=None,
        claimed_gpu_hours=16.0,
        invoice_cny=160.0,
        subsidy_cny=128.0,
    )
    build(lake, tmp, [june], allocs=ALLOCS + [a5])
    # only [00:00, 04:00) x 2 GPUs lies in the claim period: 8 metered of 16 claimed
    report = run(lake, month="2026-06")
    assert found(report) == [("OVER_CLAIM", "c6", 64.0)]
    assert run(lake, month="2026-05")["findings"] == []
    # in UTC the claim period starts on 2026-05-31, so it belongs to the May audit
    assert found(run(lake, month="2026-05", tz="UTC")) == [("OVER_CLAIM", "c6", 64.0)]


def test_every_claim_once_per_finding_or_clean(lake: Path, tmp: Path) -> None:
    claims = [
        claim("c1"),
        claim("c2", allocation_ids=["a2"], subsidy_cny=170.0, unit_price_cny=30.0),
        claim("c3", allocation_ids=["a3"]),
    ]
    build(lake, tmp, claims)
    report = run(lake)
    assert found(report) == [
        ("COVERAGE_EXCEEDED", "c2", 10.0),
        ("PRICE_ANOMALY", "c2", round(170 * 10 / 30, 2)),
    ]
    assert report["clean"] == ["c1", "c3"]
    assert [f["severity"] for f in report["findings"]] == ["medium", "medium"]
    # worst first: same severity, more CNY at stake first
    assert report["findings"][0]["finding"] == "PRICE_ANOMALY"


def test_programme_filter_and_summary(lake: Path, tmp: Path) -> None:
    claims = [claim("c1"), claim("c2", voucher_id="v2", allocation_ids=["a2"], subsidy_cny=170.0)]
    build(lake, tmp, claims)
    con = open_audit(lake)
    everything = audit(con, month="2026-05")
    assert [p["programme_id"] for p in everything["programmes"]] == ["P1", "P2"]
    only = audit(con, month="2026-05", programme="P2")
    assert [p["programme_id"] for p in only["programmes"]] == ["P2"]
    assert found(only) == [("COVERAGE_EXCEEDED", "c2", 10.0)] and only["clean"] == []
    (p2,) = only["programmes"]
    assert p2["findings"] == {"COVERAGE_EXCEEDED": {"count": 1, "cny_at_stake": 10.0}}
    assert (p2["claims"], p2["claims_clean"], p2["subsidy_paid_cny"]) == (1, 0, 170.0)
    with pytest.raises(ValueError, match="YYYY-MM"):
        audit(con, month="2026-13")


def test_thresholds_file_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text("over_claim_tolerance = 0.05\n[severity]\nIDLE_SUBSIDISED = 'high'\n")
    loaded = load_thresholds(path)
    assert loaded.over_claim_tolerance == 0.05 and loaded.severity["IDLE_SUBSIDISED"] == "high"
    assert loaded.price_anomaly_factor == Thresholds().price_anomaly_factor
    path.write_text("over_claim_tolerence = 0.05\n")
    with pytest.raises(ValueError, match="unknown setting"):
        load_thresholds(path)
