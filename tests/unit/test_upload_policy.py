"""The upload target policy as a pure function of host, port and address."""

from __future__ import annotations

import pytest

from controller.uploads.policy import UploadPolicy
from sandbox_common.addresses import parse_host_ports

OPEN = UploadPolicy()
LISTED = UploadPolicy(parse_host_ports("files.internal, 127.0.0.1:9000, 169.254.169.254"))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1::1"])
def test_public_addresses_are_allowed_when_nothing_is_listed(address: str) -> None:
    assert OPEN.host_refusal("example.com", 443) is None
    assert OPEN.address_refusal("example.com", 443, address) is None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "100.64.0.1",
    ],
)
def test_private_and_loopback_need_listing(address: str) -> None:
    refusal = str(OPEN.address_refusal("evil.example", 80, address))
    assert "a loopback address" in refusal or "a private address" in refusal, refusal
    assert "list the host in UPLOAD_ALLOWED_HOSTS" in refusal


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "169.254.1.1",
        "fe80::1",
        "fd00:ec2::254",
        "100.100.100.200",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "::ffff:169.254.169.254",
    ],
)
def test_link_local_and_metadata_are_always_refused(address: str) -> None:
    assert "always refused" in str(LISTED.address_refusal("169.254.169.254", 80, address))


def test_a_list_restricts_targets_to_its_hosts() -> None:
    assert LISTED.host_refusal("files.internal", 443) is None
    assert LISTED.host_refusal("FILES.INTERNAL", 8443) is None
    assert LISTED.host_refusal("127.0.0.1", 9000) is None
    assert "not in UPLOAD_ALLOWED_HOSTS" in str(LISTED.host_refusal("127.0.0.1", 9001))
    assert "not in UPLOAD_ALLOWED_HOSTS" in str(LISTED.host_refusal("example.com", 443))
    assert LISTED.address_refusal("files.internal", 443, "10.0.0.5") is None
    assert LISTED.address_refusal("127.0.0.1", 9000, "127.0.0.1") is None
