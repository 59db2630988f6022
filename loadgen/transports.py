"""Which transport a run uses, and building it: the registry over the transports.

``choose`` resolves ``auto`` and checks the requested kind can reach the targets; ``make``
builds the chosen one. Each transport imports only ``transport`` (the shared base); this
module imports the transports, never the other way round.
"""

from __future__ import annotations

import dataclasses
import urllib.request
from urllib.parse import urlsplit

from loadgen.targets import TargetError, run_protocol
from loadgen.transport import Transport

# auto: grpc for grpc:// targets; fast for http:// without a proxy, else aiohttp
TRANSPORTS = ("auto", "fast", "aiohttp", "grpc")


class TransportError(ValueError):
    """A transport that cannot reach these targets (message says why and what to use)."""


@dataclasses.dataclass(frozen=True)
class Choice:
    """The transport a run uses, why, and the HTTP proxy (if any) per target."""

    kind: str  # fast | aiohttp | grpc
    reason: str
    proxies: tuple[str | None, ...]

    def record(self) -> dict:
        return {"transport": self.kind, "transport_reason": self.reason}


def _proxy_for(url: str, environ_proxies: dict[str, str]) -> str | None:
    """The proxy the environment (http_proxy/https_proxy, no_proxy) sets for ``url``."""
    parts = urlsplit(url)
    proxy = environ_proxies.get(parts.scheme)
    if not proxy:
        return None
    host = parts.netloc.rsplit("@", 1)[-1]
    if urllib.request.proxy_bypass_environment(host, environ_proxies):
        return None
    return proxy


def choose(requested: str, urls: tuple[str, ...]) -> Choice:
    """Resolve ``auto`` and check that the requested transport can reach ``urls``.

    The fast transport speaks plain HTTP/1.1 straight to the target: https:// targets
    (TLS) and targets behind an HTTP proxy (from the environment) need aiohttp. grpc://
    targets take the gRPC transport, and only they do.
    """
    if requested not in TRANSPORTS:
        raise TransportError(f"unknown transport {requested!r}: use one of {', '.join(TRANSPORTS)}")
    try:
        grpc_targets = run_protocol(urls) == "grpc"
    except TargetError as e:
        raise TransportError(str(e)) from None
    if grpc_targets or requested == "grpc":
        if not grpc_targets:
            raise TransportError("the grpc transport sends to grpc://HOST:PORT/MODEL targets, "
                                 "and these are REST URLs: use --transport auto, fast or aiohttp")
        if requested not in ("auto", "grpc"):
            raise TransportError(f"grpc:// targets speak gRPC, not the {requested} transport's "
                                 "HTTP/1.1: use --transport grpc (or auto)")
        why = "asked for (--transport grpc)" if requested == "grpc" else "auto: grpc:// targets"
        return Choice("grpc", why, (None,) * len(urls))
    environ_proxies = urllib.request.getproxies_environment()
    proxies = tuple(_proxy_for(u, environ_proxies) for u in urls)
    tls = sorted({u for u in urls if urlsplit(u).scheme == "https"})
    proxied = sorted({p for p in proxies if p})
    if requested == "aiohttp":
        reason = "asked for (--transport aiohttp)"
        if proxied:
            reason += f"; through the proxy {', '.join(proxied)} (from the environment)"
        return Choice("aiohttp", reason, proxies)
    if tls or proxied:
        why = (f"https:// targets need TLS ({tls[0]})" if tls else
               f"the environment's HTTP proxy {proxied[0]} applies to the targets (see no_proxy)")
        if requested == "fast":
            raise TransportError(f"the fast transport speaks plain HTTP/1.1 with no proxy, but {why}: "
                                 "use --transport aiohttp (or auto)")
        return Choice("aiohttp", f"auto: {why}, which only the aiohttp transport supports", proxies)
    if requested == "fast":
        return Choice("fast", "asked for (--transport fast)", proxies)
    return Choice("fast", "auto: plain http:// targets, no proxy", proxies)


def make(choice: Choice, *, urls: tuple[str, ...], body: bytes, content_type: str,
         max_in_flight: int, timeout_s: float, prewarm: int = 0, channels: int = 1) -> Transport:
    """Build the chosen transport. ``prewarm``: connections per target to open before the
    run (the fast transport's); ``channels``: the gRPC transport's per target. A transport's
    module is imported only when it is chosen (a fast run never loads aiohttp or grpc)."""
    if choice.kind == "grpc":
        from loadgen import grpc_transport

        return grpc_transport.GrpcTransport(urls, body, timeout_s=timeout_s, channels=channels)
    if choice.kind == "aiohttp":
        from loadgen import aiohttp_transport

        return aiohttp_transport.AiohttpTransport(
            urls, body, content_type, max_in_flight=max_in_flight, timeout_s=timeout_s,
            proxies=choice.proxies)
    from loadgen import fast_transport  # choose() makes only "aiohttp" and "fast"

    return fast_transport.FastTransport(
        urls, body, content_type, max_in_flight=max_in_flight, timeout_s=timeout_s,
        prewarm=prewarm)
