"""The client's address as the proxy may trust it, for per-key IP allow-lists.

The socket's peer is the client, unless the peer is a proxy we trust
(`TRUSTED_PROXY_CIDRS`, comma-separated CIDRs): then `X-Forwarded-For` names the
client. Walking that header from the right, every hop that is itself a trusted proxy
is skipped; the first address that is not is the client (the leftmost entries are
whatever the client wrote, so they are never believed past an untrusted hop).
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache

from lib.core.errors import InvalidSetting

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=16)
def trusted_networks(setting: str | None) -> tuple[Network, ...]:
    """The CIDRs of TRUSTED_PROXY_CIDRS; a bad entry is a configuration error: the chat
    routes answer 503 naming the setting (before anything is reserved), never a 500."""
    if not setting:
        return ()
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in setting.split(",") if part.strip())
    except ValueError as exc:
        raise InvalidSetting("TRUSTED_PROXY_CIDRS", "comma-separated CIDRs such as 10.0.0.0/8, ::1/128") from exc


@lru_cache(maxsize=1024)
def _address(raw: str | None) -> Address | None:
    """The address in a peer or forwarded hop (cached: a keep-alive client's peer repeats)."""
    if not raw:
        return None
    text = raw.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _trusted(addr: Address, networks: tuple[Network, ...]) -> bool:
    return any(addr.version == net.version and addr in net for net in networks)


def client_ip(peer: str | None, forwarded_for: str | None, trusted_setting: str | None) -> str | None:
    """The client's address (text), or None when the peer is unknown."""
    addr = _address(peer)
    if addr is None:
        return None
    networks = trusted_networks(trusted_setting)
    if not networks or not _trusted(addr, networks) or not forwarded_for:
        return str(addr)
    for hop in reversed(forwarded_for.split(",")):
        hop_addr = _address(hop)
        if hop_addr is None:
            return str(addr)  # a malformed hop: trust nothing beyond the last good one
        addr = hop_addr
        if not _trusted(addr, networks):
            return str(addr)
    return str(addr)
