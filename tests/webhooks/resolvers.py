"""The webhook resolver of every test session and of the processes it starts (tests/conftest.py sets
WEBHOOK_RESOLVER to it): IP literals and localhost only, never a DNS query, because test traffic may
only go to 127.0.0.0/8 and this machine's DNS server is elsewhere."""

from __future__ import annotations

import ipaddress

from webhooks.addresses import IPAddress
from webhooks.targets import TargetUnresolvable


def no_dns_resolver(host: str, port: int) -> list[IPAddress]:
    if host.rstrip(".") == "localhost":
        return [ipaddress.ip_address("127.0.0.1")]
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        raise TargetUnresolvable("The host name does not resolve.") from None
