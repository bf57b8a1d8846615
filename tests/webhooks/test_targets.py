"""The webhook URL policy (SSRF guard): text checks and address checks, no connection made."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from tests.webhooks.conftest import ConnectionGuard, StubResolver
from webhooks.addresses import refusal_reason
from webhooks.targets import TargetRefused, TargetUnresolvable, check_target_url, parse_target_url, resolve_target

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"


@pytest.fixture(autouse=True)
def _nothing_allowlisted(settings: Any) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = []


# (address, the reason it is refused)
FORBIDDEN_ADDRESSES = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),  # broadcast
    ("100.64.0.1", "not globally routable"),  # carrier-grade NAT
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
]


@pytest.mark.parametrize(("address", "reason"), FORBIDDEN_ADDRESSES)
def test_forbidden_address_is_refused_for_its_reason(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", [PUBLIC_V4, PUBLIC_V6, "8.8.8.8", "::ffff:8.8.8.8"])
def test_public_address_is_allowed(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(("address", "reason"), FORBIDDEN_ADDRESSES)
def test_name_resolving_to_a_forbidden_address_is_refused_before_any_connection(
    address: str, reason: str, connections: ConnectionGuard
) -> None:
    resolver = StubResolver({"hooks.example.com": [address]})
    with pytest.raises(TargetRefused, match=f"resolves to an address webhooks may not call \\({reason}\\)") as err:
        check_target_url("https://hooks.example.com/in", resolver=resolver)
    assert address not in str(err.value)  # the message never maps internal DNS for the user
    assert resolver.lookups == ["hooks.example.com"]
    assert connections.attempts == []


@pytest.mark.parametrize(("address", "reason"), FORBIDDEN_ADDRESSES)
def test_ip_literal_of_a_forbidden_address_is_refused(address: str, reason: str) -> None:
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(TargetRefused, match=reason):
        check_target_url(f"https://{host}/in", resolver=StubResolver())


def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    resolver = StubResolver({"mixed.example.com": [PUBLIC_V4, "10.0.0.7", PUBLIC_V6]})
    with pytest.raises(TargetRefused, match="private"):
        check_target_url("https://mixed.example.com/", resolver=resolver)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",  # decimal 127.0.0.1
        "http://0x7f000001/",  # hex
        "http://0x7F.0.0.1/",
        "http://0177.0.0.1/",  # octal
        "http://017700000001/",
        "http://127.1/",  # short form
        "http://127.0.1/",
        "http://127.000.000.001/",
        "https://1.2.3.0x4/",
        "https://169.254.43518/",  # 169.254.169.254 as two parts
        "https://foo.123/",  # a numeric last label is an IPv4 number to a WHATWG parser
        "https://127.0.0.1./",
    ],
)
def test_ip_literals_in_other_forms_are_refused_even_if_the_address_is_allowlisted(url: str) -> None:
    with pytest.raises(TargetRefused):
        check_target_url(url, resolver=StubResolver())
    with pytest.raises(TargetRefused):
        parse_target_url(url, allowlist=["127.0.0.1", "2130706433", "127.1"])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://user:secret@hooks.example.com/", "user name or password"),
        ("https://user@hooks.example.com/", "user name or password"),
        ("https://:pw@hooks.example.com/", "user name or password"),
        ("https://hooks.example.com:22/", "Ports below 1024"),
        ("https://hooks.example.com:25/", "Ports below 1024"),
        ("https://hooks.example.com:8/", "Ports below 1024"),
        ("https://hooks.example.com:0/", "between 1 and 65535"),
        ("https://hooks.example.com:99999/", "between 1 and 65535"),
        ("http://hooks.example.com/", "must use https"),
        ("ftp://hooks.example.com/", "must start with https"),
        ("file:///etc/passwd", "must start with https"),
        ("gopher://hooks.example.com/", "must start with https"),
        ("javascript:alert(1)", "must start with https"),
        ("//hooks.example.com/", "must start with https"),
        ("https:///path", "no host"),
        ("https://hooks example.com/", "spaces or control"),
        ("https://hooks.example.com/\r\nX-Injected: 1", "spaces or control"),
        ("https://[fe80::1%25eth0]/", "zone"),
        ("https://hooks%2eexample.com/", "percent"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://[::ffff:7f00:1]/", "loopback"),
        ("https://" + "a" * 2000 + ".com/", "longer than"),
    ],
)
def test_bad_urls_are_refused_with_a_message(url: str, message: str) -> None:
    with pytest.raises(TargetRefused, match=message):
        check_target_url(url, resolver=StubResolver({"hooks.example.com": [PUBLIC_V4]}))


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/in", "https://hooks.example.com:443/in", "https://hooks.example.com:8443/in?a=1"],
)
def test_https_to_a_public_host_is_accepted(url: str) -> None:
    checked = check_target_url(url, resolver=StubResolver({"hooks.example.com": [PUBLIC_V4, PUBLIC_V6]}))
    assert [str(a) for a in checked.addresses] == [PUBLIC_V4, PUBLIC_V6]
    assert checked.parsed.host == "hooks.example.com"


def test_the_connection_url_carries_the_checked_address_and_the_host_header_the_name() -> None:
    checked = check_target_url(
        "https://Hooks.Example.com:8443/in?a=1", resolver=StubResolver({"hooks.example.com": [PUBLIC_V4, PUBLIC_V6]})
    )
    assert str(checked.url_for(checked.addresses[0])) == f"https://{PUBLIC_V4}:8443/in?a=1"
    assert str(checked.url_for(checked.addresses[1])) == f"https://[{PUBLIC_V6}]:8443/in?a=1"
    assert checked.parsed.host_header == "hooks.example.com:8443"
    default_port = check_target_url(
        "https://hooks.example.com/", resolver=StubResolver({"hooks.example.com": [PUBLIC_V4]})
    )
    assert default_port.parsed.host_header == "hooks.example.com"


def test_ipv4_mapped_public_address_connects_as_ipv4() -> None:
    checked = check_target_url("https://m.example.com/", resolver=StubResolver({"m.example.com": ["::ffff:8.8.8.8"]}))
    assert [str(a) for a in checked.addresses] == ["8.8.8.8"]


def test_international_host_is_resolved_in_its_ascii_form() -> None:
    resolver = StubResolver({"xn--bcher-kva.example": [PUBLIC_V4]})
    checked = check_target_url("https://bücher.example/", resolver=resolver)
    assert resolver.lookups == ["xn--bcher-kva.example"]
    assert checked.parsed.host_header == "xn--bcher-kva.example"


def test_http_and_private_addresses_only_for_an_allowlisted_host() -> None:
    resolver = StubResolver({"intranet.corp": ["10.0.0.5"]})
    with pytest.raises(TargetRefused, match="must use https"):
        parse_target_url("http://intranet.corp/hook", allowlist=[])
    parsed = parse_target_url("http://intranet.corp/hook", allowlist=["intranet.corp"])
    assert [str(a) for a in resolve_target(parsed, resolver=resolver).addresses] == ["10.0.0.5"]
    # The allowlist names hosts exactly: a sub-domain or another name for the address is not allowed.
    with pytest.raises(TargetRefused):
        parse_target_url("http://evil.intranet.corp/hook", allowlist=["intranet.corp"])


def test_allowlisted_ip_literal_matches_any_spelling_of_that_address() -> None:
    assert parse_target_url("http://[::1]:8080/", allowlist=["::1"]).allowlisted
    assert parse_target_url("http://127.0.0.1:8080/", allowlist=["127.0.0.1"]).allowlisted
    assert not parse_target_url("https://127.0.0.2:8080/", allowlist=["127.0.0.1"]).allowlisted


def test_the_tests_allowlist_admits_the_local_receivers(settings: Any) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    checked = check_target_url("http://127.0.0.1:8080/in", resolver=StubResolver())
    assert [str(a) for a in checked.addresses] == ["127.0.0.1"]


def test_a_name_that_does_not_resolve_is_refused_as_unresolvable() -> None:
    with pytest.raises(TargetUnresolvable):
        check_target_url("https://nowhere.example.com/", resolver=StubResolver())


def test_the_policy_resolves_once() -> None:
    resolver = StubResolver({"hooks.example.com": [PUBLIC_V4]})
    check_target_url("https://hooks.example.com/", resolver=resolver)
    assert resolver.lookups == ["hooks.example.com"]


def test_egress_networks_bound_every_target_even_an_allowlisted_one(settings: Any) -> None:
    settings.WEBHOOK_EGRESS_NETWORKS = ["127.0.0.0/8"]
    public = StubResolver({"hooks.example.com": [PUBLIC_V4]})
    with pytest.raises(TargetRefused, match="outside the networks"):
        check_target_url("https://hooks.example.com/", resolver=public)
    with pytest.raises(TargetRefused, match="outside the networks"):
        check_target_url(f"https://{PUBLIC_V4}/", resolver=public)
    settings.WEBHOOK_ALLOWED_HOSTS = ["intranet.corp"]
    with pytest.raises(TargetRefused, match="outside the networks"):
        check_target_url("http://intranet.corp/", resolver=StubResolver({"intranet.corp": ["10.0.0.5"]}))
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    assert check_target_url("http://127.0.0.1:8080/", resolver=public).addresses
