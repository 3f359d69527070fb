"""Where a webhook may send: http(s) hosts that resolve to public addresses only.

Private, loopback, link-local (cloud metadata), shared, reserved and multicast addresses are
refused unless STRATUS_WEBHOOKS__ALLOW_PRIVATE_TARGETS is set (it is under ``stratus dev``).
The check runs when the webhook is created and again before every attempt, so a name that
later resolves elsewhere is caught too; a name that does not resolve yet is accepted at
creation, and its attempts fail (and are retried) until it does.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

ALLOW_SETTING = "STRATUS_WEBHOOKS__ALLOW_PRIVATE_TARGETS"


class TargetRefused(Exception):
    """The URL may not be called; the message says why, in words."""


class TargetUnresolved(TargetRefused):
    """The host does not resolve (now): refused for an attempt, not for a new webhook, whose
    name may not exist yet."""


def _refused(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_target(url: str, allow_private: bool) -> None:
    """Raise ``TargetRefused`` unless ``url`` is http(s) and its host is allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("only http:// and https:// URLs with a host are allowed")
    if allow_private:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetUnresolved(f"the host {parts.hostname!r} does not resolve") from exc
    blocked = sorted({str(info[4][0]) for info in infos if _refused(str(info[4][0]))})
    if blocked:
        raise TargetRefused(
            f"the host {parts.hostname!r} resolves to a private, loopback, link-local or "
            f"reserved address ({', '.join(blocked)}); set {ALLOW_SETTING}=true to allow it"
        )
