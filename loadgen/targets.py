"""What a target URL names, declared once: the protocol it speaks and, for gRPC, where.

REST targets are TF Serving's URLs as they are (``http://HOST:8501/v1/models/M:predict``,
or ``https://``). gRPC targets are ``grpc://HOST:PORT/MODEL``: the channel's address and
the model the PredictRequest names (``model_spec.name``). One run speaks one protocol.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

from formats.results import PROTOCOLS

__all__ = ["GRPC_SCHEME", "PROTOCOLS", "GrpcTarget", "TargetError", "grpc_target", "protocol_of", "run_protocol"]
REST_SCHEMES = ("http", "https")
GRPC_SCHEME = "grpc"


class TargetError(ValueError):
    """A target URL that names nothing we can send to (message says why)."""


@dataclasses.dataclass(frozen=True)
class GrpcTarget:
    address: str  # HOST:PORT, as grpc.aio.insecure_channel takes it
    model: str


def protocol_of(url: str) -> str:
    """``rest`` or ``grpc``; TargetError for any other URL."""
    parts = urlsplit(url)
    if parts.scheme in REST_SCHEMES and parts.hostname:
        return "rest"
    if parts.scheme == GRPC_SCHEME:
        grpc_target(url)
        return "grpc"
    raise TargetError(f"bad target {url!r}: expected http://HOST:PORT/PATH (or https://), "
                      "or grpc://HOST:PORT/MODEL")


def grpc_target(url: str) -> GrpcTarget:
    parts = urlsplit(url)
    model = parts.path.strip("/")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != GRPC_SCHEME or not parts.hostname or port is None or not model or "/" in model \
            or parts.query or parts.fragment:
        raise TargetError(f"bad gRPC target {url!r}: expected grpc://HOST:PORT/MODEL")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return GrpcTarget(f"{host}:{port}", model)


def run_protocol(urls: tuple[str, ...]) -> str:
    """The one protocol all ``urls`` speak; TargetError when they mix or one is bad."""
    protocols = {protocol_of(u) for u in urls}
    if len(protocols) > 1:
        raise TargetError("the targets mix REST (http://) and gRPC (grpc://): one run speaks one protocol")
    if protocols == {"grpc"} and len({grpc_target(u).model for u in urls}) > 1:
        raise TargetError("the gRPC targets name different models: one run sends one request")
    return protocols.pop() if protocols else "rest"
