"""Slurm hostlist expressions, including the node list of XDMoD's real accounting fixture."""

from __future__ import annotations

import pytest

from collectors.hostlist import HostlistError, expand


def test_plain_names_and_empty() -> None:
    assert expand("k10n26s01,k13n36s01,k13n37s01") == ["k10n26s01", "k13n36s01", "k13n37s01"]
    assert expand("cpn-k16-35-01") == ["cpn-k16-35-01"]
    assert expand("") == []
    assert expand("None assigned") == []


def test_ranges_keep_zero_padding_and_lists_mix() -> None:
    assert expand("d13n[03,05,07-08,16]") == ["d13n03", "d13n05", "d13n07", "d13n08", "d13n16"]
    assert expand("d09n04s[01-02]") == ["d09n04s01", "d09n04s02"]
    assert expand("gpu[8-11]") == ["gpu8", "gpu9", "gpu10", "gpu11"]
    assert expand("n[098-101]") == ["n098", "n099", "n100", "n101"]


def test_several_brackets_give_the_product_and_a_suffix_is_kept() -> None:
    assert expand("r[1-2]n[1-2]") == ["r1n1", "r1n2", "r2n1", "r2n2"]
    assert expand("node[1-2]-ib") == ["node1-ib", "node2-ib"]


def test_xdmod_fixture_nodelist_expands_to_32_nodes() -> None:
    # the NodeList of job 4103947 in XDMoD's accounting-logs.log; its NNodes field says 32
    text = (
        "d07n07s02,d07n19s02,d07n25s01,d07n28s01,d07n29s01,d07n31s02,d07n38s02,d09n04s[01-02],"
        "d09n05s02,d09n06s01,d09n07s01,d09n08s[01-02],d09n09s01,d09n11s[01-02],d09n13s01,"
        "d09n14s01,d09n15s01,d09n16s01,d09n17s01,d09n24s01,d09n25s02,d09n28s01,d09n35s01,"
        "d09n38s02,d13n[03,05,07-08,16]"
    )
    hosts = expand(text)
    assert len(hosts) == 32 == len(set(hosts))
    assert hosts[7:9] == ["d09n04s01", "d09n04s02"]
    assert hosts[-5:] == ["d13n03", "d13n05", "d13n07", "d13n08", "d13n16"]


@pytest.mark.parametrize("bad", ["n[1-2", "n1-2]", "n[a-b]", "n[5-3]", "a,,b", "n[1-99999999]"])
def test_malformed_lists_are_refused(bad: str) -> None:
    with pytest.raises(HostlistError):
        expand(bad)
