"""The webhook URL policy (the SSRF guard): which target URLs are accepted, and the addresses a
delivery may connect to.

Two steps, both run at create/update and again before every delivery (DNS can change):
- `parse_target_url` checks the URL's text: scheme, credentials, port, host spelling (no I/O);
- `resolve_target` resolves the host once and checks every address. The delivery then connects to
  those very addresses (webhooks.delivery), never resolving the name again, so a DNS answer that
  changes between the check and the connection (DNS rebinding) cannot point it elsewhere.

A host named in WEBHOOK_ALLOWED_HOSTS (exactly as written in the URL, or the same IP literal) may use
http and may resolve to any address: that is how a deployment reaches an internal service, and how the
tests reach receivers on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.utils.module_loading import import_string

from webhooks.addresses import AmbiguousIPLiteral, IPAddress, canonical, parse_host_literal, refusal_reason

MAX_URL_LENGTH = 2000
DEFAULT_PORTS = {"https": 443, "http": 80}

# (host, port) -> the addresses the host has; raises TargetUnresolvable when it has none.
Resolver = Callable[[str, int], Sequence[IPAddress]]


class TargetRefused(ValueError):
    """The URL may not be called. The message is safe to show to the user who gave the URL (it never
    names an address the host resolved to, so the policy cannot be used to map internal DNS)."""


class TargetUnresolvable(TargetRefused):
    """The host has no address (now). Refused at create; at delivery a retryable failure."""


@dataclass(frozen=True)
class ParsedTarget:
    url: httpx.URL
    scheme: str
    # ASCII (IDNA) host, lower case, without brackets; what is resolved and sent as TLS SNI.
    host: str
    port: int
    literal: IPAddress | None
    allowlisted: bool

    @property
    def host_header(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return shown if self.port == DEFAULT_PORTS[self.scheme] else f"{shown}:{self.port}"


@dataclass(frozen=True)
class CheckedTarget:
    """A URL that passed the policy, with the addresses (in resolver order) it may connect to."""

    parsed: ParsedTarget
    addresses: tuple[IPAddress, ...]

    def url_for(self, address: IPAddress) -> httpx.URL:
        """The URL with its host replaced by one checked address: httpx then connects there and
        nowhere else (the Host header and TLS SNI keep the name; see webhooks.delivery)."""
        return self.parsed.url.copy_with(host=str(address), port=self.parsed.port)


def allowed_hosts() -> list[str]:
    entries = getattr(settings, "WEBHOOK_ALLOWED_HOSTS", [])
    return [str(h).strip().lower().rstrip(".") for h in entries if str(h).strip()]


def egress_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """WEBHOOK_EGRESS_NETWORKS: when set, the only networks a webhook may reach at all (allowlisted
    hosts included); empty, any address the policy allows."""
    return [
        ipaddress.ip_network(str(n).strip(), strict=False)
        for n in getattr(settings, "WEBHOOK_EGRESS_NETWORKS", [])
        if str(n).strip()
    ]


def _is_allowlisted(host: str, literal: IPAddress | None, allowlist: Iterable[str]) -> bool:
    bare = host.rstrip(".")
    for entry in allowlist:
        if entry == bare:
            return True
        if literal is not None:
            try:
                if canonical(ipaddress.ip_address(entry.strip("[]"))) == canonical(literal):
                    return True
            except ValueError:
                continue
    return False


def parse_target_url(url: str, *, allowlist: Iterable[str] | None = None) -> ParsedTarget:
    """Check a target URL's text (no DNS). Raises TargetRefused with a message for the user."""
    allow = list(allowed_hosts() if allowlist is None else allowlist)
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise TargetRefused("The URL may not contain spaces or control characters.")
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii").lower()
    except httpx.InvalidURL as exc:
        if "IPv4" in str(exc):  # httpx's own refusal of, e.g., 0177.0.0.1
            raise TargetRefused(f"The host is not allowed: {AmbiguousIPLiteral.DOTTED_DECIMAL}.") from exc
        raise TargetRefused("Enter a valid URL.") from exc
    except (UnicodeError, TypeError) as exc:
        raise TargetRefused("Enter a valid URL.") from exc
    scheme = parsed.scheme
    if scheme not in DEFAULT_PORTS:
        raise TargetRefused("The URL must start with https:// (or http:// for a host the operator allows).")
    if not host:
        raise TargetRefused("The URL has no host.")
    if parsed.userinfo:
        raise TargetRefused("The URL may not contain a user name or password.")
    if "%" in host:
        raise TargetRefused("The host name may not contain percent-escapes or IPv6 zone identifiers.")
    try:
        literal = parse_host_literal(host)
    except AmbiguousIPLiteral as exc:
        raise TargetRefused(f"The host is not allowed: {exc}.") from exc
    port = parsed.port if parsed.port is not None else DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise TargetRefused("The port must be between 1 and 65535.")
    if port < 1024 and port not in (80, 443):
        raise TargetRefused("Ports below 1024 other than 80 and 443 are not allowed.")
    allowlisted = _is_allowlisted(host, literal, allow)
    if scheme == "http" and not allowlisted:
        raise TargetRefused("The URL must use https:// (http:// only for a host the operator allows).")
    return ParsedTarget(url=parsed, scheme=scheme, host=host, port=port, literal=literal, allowlisted=allowlisted)


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The operating system's resolver (getaddrinfo), addresses in its order without repeats."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetUnresolvable("The host name does not resolve.") from exc
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]
        address = ipaddress.ip_address(text)
        if address not in found:
            found.append(address)
    return found


def configured_resolver() -> Resolver:
    resolver: Resolver = import_string(getattr(settings, "WEBHOOK_RESOLVER", "webhooks.targets.system_resolver"))
    return resolver


def resolve_target(parsed: ParsedTarget, *, resolver: Resolver | None = None) -> CheckedTarget:
    """Resolve the host once and check each address. Raises TargetRefused (TargetUnresolvable when
    there is no address). A name with one forbidden address among public ones is refused as a
    whole: an attacker controls which of them a client would try first."""
    if parsed.literal is not None:
        addresses: list[IPAddress] = [parsed.literal]
    else:
        addresses = list((resolver or configured_resolver())(parsed.host, parsed.port))
        if not addresses:
            raise TargetUnresolvable("The host name does not resolve.")
    addresses = list(dict.fromkeys(canonical(a) for a in addresses))
    what = "is" if parsed.literal is not None else "resolves to"
    if not parsed.allowlisted:
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None:
                raise TargetRefused(f"The host {what} an address webhooks may not call ({reason}).")
    networks = egress_networks()
    if networks and not all(any(address in network for network in networks) for address in addresses):
        raise TargetRefused(f"The host {what} an address outside the networks this server may reach.")
    return CheckedTarget(parsed=parsed, addresses=tuple(addresses))


def check_target_url(url: str, *, resolver: Resolver | None = None) -> CheckedTarget:
    """parse_target_url, then resolve_target: the full policy, as at create/update and delivery."""
    return resolve_target(parse_target_url(url), resolver=resolver)
