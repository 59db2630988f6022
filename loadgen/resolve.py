"""A target named by a host that resolves to several addresses becomes one target per address.

In a cluster the agents target a headless Service's DNS name
(``http://NAME.NAMESPACE.svc.cluster.local:8501/...``), which resolves to every ready
server pod. An agent expands such a target into one target per address, sorted, so every
agent holds the same list and the engine's round-robin over targets (arrival ``i`` to
target ``i % n``, ``i`` counted across the whole run) sends every replica exactly every
n-th arrival, whichever agent sends it. A name with one address (a ClusterIP Service, a
load balancer, an IP) is left as it is.

``lookup`` reads a hosts file first when one is given (``/etc/hosts`` format; every line
naming the host adds its address), then the system resolver: what a pod's kubelet-written
``/etc/hosts`` and the cluster's DNS give it. The API double stands in for cluster DNS
with such a file (``deploy/k8s_double.py``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


class ResolveError(ValueError):
    """A target's host does not resolve (message says which and why)."""


Lookup = Callable[[str], Sequence[str]]  # host -> its addresses


def read_hosts(path: Path, host: str) -> list[str]:
    """The addresses ``path`` (hosts-file format) gives ``host``, in file order."""
    name = host.lower().rstrip(".")
    out = []
    for line in path.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and name in (f.lower().rstrip(".") for f in fields[1:]):
            out.append(fields[0])
    return out


def lookup(host: str, hosts_file: Path | None = None) -> list[str]:
    """``host``'s addresses: from ``hosts_file`` if it names the host, else the system's
    resolver (its IPv4 addresses, or its IPv6 ones when it has no IPv4)."""
    if hosts_file is not None:
        try:
            found = read_hosts(hosts_file, host)
        except OSError as e:
            raise ResolveError(f"cannot read the hosts file {hosts_file}: {e}") from None
        if found:
            return found
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise ResolveError(f"cannot resolve {host!r}: {e}") from None
    v4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
    return v4 or [i[4][0] for i in infos if i[0] == socket.AF_INET6]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def expand(urls: Sequence[str], lookup_host: Lookup) -> tuple[str, ...]:
    """``urls`` with every URL whose host has several addresses replaced, in place, by one
    URL per address (sorted, duplicates dropped); the rest unchanged."""
    out: list[str] = []
    for url in urls:
        parts = urlsplit(url)
        host = parts.hostname
        if not host or _is_ip(host):
            out.append(url)
            continue
        addresses = sorted({ipaddress.ip_address(a) for a in lookup_host(host)})
        if not addresses:
            raise ResolveError(f"{host!r} resolves to no address")
        if len(addresses) == 1:
            out.append(url)
            continue
        port = f":{parts.port}" if parts.port is not None else ""
        for a in addresses:
            netloc = (f"[{a}]" if a.version == 6 else str(a)) + port
            out.append(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))
    return tuple(out)
