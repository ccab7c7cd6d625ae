"""Where a webhook may go: every address the host resolves to must be public (not private,
loopback, link-local, shared, reserved or multicast) unless an operator allowed its network
(WEBHOOKS_ALLOWED_NETWORKS). The request then goes to an address so checked, never resolved again:
a name that resolves anew to a private address between the check and the connection gains nothing."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RefusedAddress(Exception):
    """The endpoint's host cannot be resolved, or resolves to an address webhooks may not go to."""


def _kind(address: IPAddress) -> str | None:
    """Why `address` is not public (None when it is)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _kind(address.ipv4_mapped)
    for kind, flagged in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("private", address.is_private),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
    ):
        if flagged:
            return kind
    return None if address.is_global else "reserved"


def refusal(address: IPAddress, allowed: Sequence[Network]) -> str | None:
    """Why a webhook may not go to `address`, or None."""
    kind = _kind(address)
    if kind is None or any(address in network for network in allowed):
        return None
    return f"a {kind} address"


async def checked_address(host: str, port: int, allowed: Sequence[Network]) -> IPAddress:
    """The address to send to: the first `host` resolves to, once all it resolves to are allowed."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RefusedAddress(f"{host} does not resolve ({exc.strerror})") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    for address in addresses:
        why = refusal(address, allowed)
        if why is not None:
            raise RefusedAddress(
                f"{host} resolves to {address}, {why}: not sent (WEBHOOKS_ALLOWED_NETWORKS lets an "
                "operator allow a network)"
            )
    return addresses[0]
