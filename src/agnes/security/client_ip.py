"""The client's address and scheme, trusting X-Forwarded-For/-Proto only from configured proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache


@lru_cache(maxsize=32)
def _networks(trusted: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in trusted if t != "*")


def _is_trusted(address: str, trusted: tuple[str, ...]) -> bool:
    if "*" in trusted:  # every peer is a proxy (only behind a proxy nobody can bypass)
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:  # a dual-stack bind: ::ffff:172.30.0.10
        ip = ip.ipv4_mapped
    return any(ip in net for net in _networks(trusted))


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[str]) -> str | None:
    """Walk X-Forwarded-For from the right while hops are trusted proxies."""
    trusted_t = tuple(trusted)
    if not peer or not forwarded_for or not trusted_t or not _is_trusted(peer, trusted_t):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted_t):
            return hop
    return hops[0] if hops else peer


def is_https(scheme: str, peer: str | None, forwarded_proto: str | None, trusted: Sequence[str]) -> bool:
    """TLS reached the client: our own scheme, or X-Forwarded-Proto from a trusted proxy (Caddy)."""
    if scheme in ("https", "wss"):
        return True
    trusted_t = tuple(trusted)
    if not peer or not forwarded_proto or not trusted_t or not _is_trusted(peer, trusted_t):
        return False
    return forwarded_proto.split(",")[0].strip().lower() == "https"  # the client-facing hop comes first
