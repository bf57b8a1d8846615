"""Which IP addresses a webhook may connect to, and how a URL's host is read. Pure functions, no I/O.

An address is allowed only when it is globally routable: loopback, private (RFC 1918, fc00::/7),
link-local (169.254.0.0/16 with the cloud metadata service, fe80::/10), multicast, unspecified and
reserved ranges are refused. An IPv6 address that carries an IPv4 address (IPv4-mapped ::ffff:0:0/96,
NAT64 64:ff9b::/96, 6to4 2002::/16) is judged by the IPv4 address it reaches.
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Every dotted label a number: decimal, octal (leading 0) or hex (0x). inet_aton() and the WHATWG URL
# parser read "2130706433", "0x7f000001", "0177.0.0.1" and "127.1" as 127.0.0.1.
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"^{_OCTET}(\.{_OCTET}){{3}}$")


class AmbiguousIPLiteral(ValueError):
    """A host written as a number in a form other than four dotted decimals."""

    DOTTED_DECIMAL = "write an IPv4 address as four decimal numbers, e.g. 192.0.2.1"


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches, if it is one of the forms that carry one."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def canonical(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as the IPv4 address it is (what a dual-stack socket connects to)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def refusal_reason(address: IPAddress) -> str | None:
    """Why a webhook may not connect to this address, or None when it may."""
    inner = embedded_ipv4(address)
    if inner is not None:
        return refusal_reason(inner)
    # Order matters only for the message: the most specific name first.
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:  # before private: Python counts 240.0.0.0/4 as both
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        # 100.64.0.0/10 (carrier-grade NAT) and the like: not private, not reachable either.
        return "not globally routable"
    return None


def parse_host_literal(host: str) -> IPAddress | None:
    """The IP address a URL host names literally, None for a host name.

    `host` is the URL's host without brackets. Only the unambiguous spellings are accepted: four
    dotted decimals without leading zeros for IPv4, and standard IPv6 text (no zone id). Any other
    all-numeric host raises AmbiguousIPLiteral rather than letting a resolver decide what it means.
    """
    if ":" in host:
        if "%" in host:
            raise AmbiguousIPLiteral("IPv6 zone identifiers are not allowed")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise AmbiguousIPLiteral("not a valid IPv6 address") from exc
    labels = host.rstrip(".").split(".")
    if all(_NUMERIC_LABEL.match(label) for label in labels) or _NUMERIC_LABEL.match(labels[-1]):
        # The WHATWG parser treats a host whose last label is numeric as IPv4 too ("1.2.3.0x4").
        if _CANONICAL_IPV4.match(host):
            return ipaddress.IPv4Address(host)
        raise AmbiguousIPLiteral(AmbiguousIPLiteral.DOTTED_DECIMAL)
    return None
