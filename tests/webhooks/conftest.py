"""Webhook tests: receivers on 127.0.0.1 only, and a guard that proves it.

Every test here runs under `connections`: a record of each socket connect this process attempts, which
also refuses (before any packet) a connection to anything outside 127.0.0.0/8 and any name lookup
that would need DNS. So an SSRF refusal is proven by an empty record, and a defect that let a request
out would fail the test instead of sending it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from webhooks.addresses import IPAddress
from webhooks.targets import TargetUnresolvable

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class ConnectionGuard:
    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []

    def check(self, address: Any) -> None:
        if isinstance(address, tuple):
            host, port = str(address[0]), int(address[1])
            self.attempts.append((host, port))
            ip = ipaddress.ip_address(host.split("%", 1)[0])
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            if ip not in LOOPBACK and ip != ipaddress.IPv6Address("::1"):
                raise PermissionError(f"test traffic may only go to 127.0.0.0/8, not {host}")

    def outside_loopback(self) -> list[tuple[str, int]]:
        return [a for a in self.attempts if ipaddress.ip_address(a[0].split("%", 1)[0]) not in LOOPBACK]


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectionGuard]:
    guard = ConnectionGuard()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            guard.check(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            guard.check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            if text != "localhost":
                raise socket.gaierror(socket.EAI_NONAME, f"tests do not resolve names over DNS: {text}") from None
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield guard


class StubResolver:
    """Resolves from a table, counting lookups; an unknown name does not resolve."""

    def __init__(self, table: dict[str, Sequence[str]] | None = None) -> None:
        self.table = {k: [ipaddress.ip_address(a) for a in v] for k, v in (table or {}).items()}
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        if host not in self.table:
            raise TargetUnresolvable("The host name does not resolve.")
        return list(self.table[host])


@pytest.fixture
def stub_resolver() -> Callable[..., StubResolver]:
    return StubResolver


@pytest.fixture(autouse=True)
def _webhook_settings(settings: Any) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_RESOLVER = "tests.webhooks.resolvers.no_dns_resolver"
    # The policy's own tables include public addresses (never connected to: `connections` would
    # refuse it); the session-wide loopback-only egress (tests/conftest.py) is tested on its own.
    settings.WEBHOOK_EGRESS_NETWORKS = []
