"""File descriptors: raise the process's soft limit to its hard one, and size the connection caps
so that clients can never take the descriptors the AWS clients and the listeners need.

Every DNS-over-TCP and HTTP connection is a descriptor. Without caps below the limit, 720 slow
HTTP clients once exhausted it and then /healthz, DNS over TCP and even the AWS polls failed.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

# Kept for what is not a client: listeners, AWS connections (aiohttp pools of up to 20 per client),
# the snapshot file, logs, the event loop's own.
RESERVED = 256
DNS_TCP_MAX = 512
HTTP_MAX = 1024


@dataclass(frozen=True, slots=True)
class ConnectionCaps:
    dns_tcp: int
    http: int


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("open_files_limit_not_raised", soft=soft, hard=hard, error=str(exc))
    return soft


def connection_caps(open_files: int) -> ConnectionCaps:
    """DNS-over-TCP and HTTP connection caps that leave RESERVED descriptors free."""
    available = max(open_files - RESERVED, 32)
    dns_tcp = min(DNS_TCP_MAX, available // 3)
    http = min(HTTP_MAX, available - dns_tcp)
    if dns_tcp < DNS_TCP_MAX or http < HTTP_MAX:
        log.warning("connection_caps_lowered", open_files=open_files, dns_tcp=dns_tcp, http=http)
    return ConnectionCaps(dns_tcp=dns_tcp, http=http)
