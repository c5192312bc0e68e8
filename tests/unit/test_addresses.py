"""Address safety (sandbox_common.addresses): every spelling of an address, judged once.

Uploads and the browser agent both decide from this classification, so the spellings
that smuggle an IPv4 address inside an IPv6 one are tested here, and the last test
shows the two policies agree on every address of the table.
"""

from __future__ import annotations

import ipaddress

import pytest

from controller.uploads.policy import UploadPolicy
from sandbox_common.addresses import Kind, canonical, classify, parse, parse_host_ports
from sandbox_common.egress_gate import EgressRules
from sandbox_common.forward_proxy import Refused
from tests.support import public_web

SPELLINGS = {
    # address: what it really is
    "169.254.169.254": Kind.METADATA,
    "::ffff:169.254.169.254": Kind.METADATA,  # IPv4-mapped
    "::ffff:a9fe:a9fe": Kind.METADATA,  # the same, in hex
    "64:ff9b::a9fe:a9fe": Kind.METADATA,  # NAT64, well-known prefix
    "64:ff9b:1::a9fe:a9fe": Kind.METADATA,  # NAT64, local-use prefix
    "::a9fe:a9fe": Kind.METADATA,  # IPv4-compatible (deprecated, still parsed)
    "2002:a9fe:a9fe::1": Kind.METADATA,  # 6to4
    "fd00:ec2::254": Kind.METADATA,
    "100.100.100.200": Kind.METADATA,
    "168.63.129.16": Kind.METADATA,
    "127.0.0.1": Kind.LOOPBACK,
    "127.9.9.9": Kind.LOOPBACK,
    "::1": Kind.LOOPBACK,
    "::ffff:127.0.0.1": Kind.LOOPBACK,
    "64:ff9b::7f00:1": Kind.LOOPBACK,
    "::7f00:1": Kind.LOOPBACK,
    "2002:7f00:1::": Kind.LOOPBACK,
    "10.1.2.3": Kind.PRIVATE,
    "172.16.0.1": Kind.PRIVATE,
    "192.168.1.1": Kind.PRIVATE,
    "64:ff9b::a00:1": Kind.PRIVATE,
    "::ffff:10.0.0.1": Kind.PRIVATE,
    "2002:0a00:0001::": Kind.PRIVATE,
    "100.64.0.1": Kind.PRIVATE,  # CGNAT
    "fc00::1": Kind.PRIVATE,
    "fd12:3456::1": Kind.PRIVATE,
    "192.0.0.8": Kind.PRIVATE,
    "198.18.0.1": Kind.PRIVATE,
    "240.0.0.1": Kind.PRIVATE,
    "255.255.255.255": Kind.PRIVATE,
    "2001:db8::1": Kind.PRIVATE,  # documentation
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": Kind.PRIVATE,  # Teredo
    "169.254.1.1": Kind.LINK_LOCAL,
    "fe80::1": Kind.LINK_LOCAL,
    "fe80::1%eth0": Kind.LINK_LOCAL,
    "224.0.0.1": Kind.MULTICAST,
    "ff02::1": Kind.MULTICAST,
    "::ffff:224.0.0.1": Kind.MULTICAST,
    "0.0.0.0": Kind.UNSPECIFIED,
    "0.1.2.3": Kind.UNSPECIFIED,
    "::": Kind.UNSPECIFIED,
    "::ffff:0.0.0.0": Kind.UNSPECIFIED,
    "93.184.216.34": Kind.PUBLIC,
    "8.8.8.8": Kind.PUBLIC,
    "2606:4700::1111": Kind.PUBLIC,
    "::ffff:8.8.8.8": Kind.PUBLIC,
    "64:ff9b::808:808": Kind.PUBLIC,
    "2002:808:808::1": Kind.PUBLIC,
}


@pytest.mark.parametrize(("address", "kind"), SPELLINGS.items())
def test_every_spelling_is_judged_by_what_it_reaches(address: str, kind: Kind) -> None:
    assert classify(parse(address)) is kind


def test_embedded_addresses_are_unwrapped() -> None:
    assert canonical(parse("64:ff9b::a00:1")) == ipaddress.ip_address("10.0.0.1")
    assert canonical(parse("::ffff:10.0.0.1")) == ipaddress.ip_address("10.0.0.1")
    assert canonical(parse("2606:4700::1111")) == parse("2606:4700::1111")


@pytest.mark.parametrize(("address", "kind"), SPELLINGS.items())
async def test_uploads_and_browsers_agree_on_every_address(address: str, kind: Kind) -> None:
    upload = UploadPolicy().address_refusal("target.example", 443, address)
    try:
        await public_web(EgressRules()).check(address, 443)
        browser = None
    except Refused as exc:
        browser = str(exc)
    assert (upload is None) is (browser is None) is (kind is Kind.PUBLIC)


def test_parse_host_ports() -> None:
    assert parse_host_ports(" Files.Example.com , 127.0.0.1:9000,[::1]:8080,,") == {
        ("files.example.com", None),
        ("127.0.0.1", 9000),
        ("::1", 8080),
    }
    for bad in ("host:0", "host:http", "[::1]:x", "host:70000"):
        with pytest.raises(ValueError, match="bad port"):
            parse_host_ports(bad)
