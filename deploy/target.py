"""The one interface both backends offer: deploy a Config, get a Target, tear it down."""

from __future__ import annotations

import dataclasses
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from deploy.spec import Config


class DeployError(RuntimeError):
    """A deployment could not be brought up or torn down; the message says why."""


@dataclasses.dataclass(frozen=True)
class Replica:
    """One server replica, read directly (its Prometheus metrics, its model status):
    ``name`` says which (its base URL, or ``pod/NAME``); ``get(path, timeout_s)`` returns
    the body at ``path`` on its REST port, or raises DeployError."""

    name: str
    get: Callable[[str, float], bytes]


def http_replica(base_url: str) -> Replica:
    """A replica this machine reaches at ``base_url``."""
    def get(path: str, timeout_s: float) -> bytes:
        url = base_url.rstrip("/") + path
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                return response.read()
        except (urllib.error.URLError, OSError) as e:
            raise DeployError(f"{url}: {e}") from None

    return Replica(base_url, get)


@dataclasses.dataclass(frozen=True)
class Target:
    """Where to send load for one deployed Config.

    ``base_urls`` are the endpoints the load generator should spread requests over (one
    per replica locally, the Service on a cluster); ``urls``, their REST predict URLs
    for ``model_name``, go into run.json's "targets". ``grpc_bases`` are the same
    endpoints' gRPC addresses (``grpc://HOST:PORT``, one per base URL; empty when the
    backend reaches no gRPC port). ``identity`` is the run.json "server" record (kind,
    version, argv, image_digest, ...). ``replica_list`` gives the replicas as they are
    now, each read on its own (a cluster's pods through the API server); without it each
    base URL is a replica.
    """

    base_urls: tuple[str, ...]
    model_name: str
    identity: Mapping[str, Any]
    grpc_bases: tuple[str, ...] = ()
    replica_list: Callable[[], tuple[Replica, ...]] | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.base_urls:
            raise ValueError("a Target needs at least one URL")
        if self.grpc_bases and len(self.grpc_bases) != len(self.base_urls):
            raise ValueError("a Target's gRPC addresses pair with its REST URLs, one each")

    def replicas(self) -> tuple[Replica, ...]:
        """The deployment's replicas, each read on its own (DeployError when they cannot be listed)."""
        if self.replica_list is not None:
            return self.replica_list()
        return tuple(http_replica(b) for b in self.base_urls)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(predict_url(b, self.model_name) for b in self.base_urls)

    def load_urls(self, protocol: str) -> tuple[str, ...]:
        """The generator's targets for ``protocol``: REST predict URLs, or
        ``grpc://HOST:PORT/MODEL`` (loadgen.targets)."""
        if protocol == "rest":
            return self.urls
        if protocol != "grpc":
            raise DeployError(f"unknown protocol {protocol!r}")
        if not self.grpc_bases:
            raise DeployError("this deployment's endpoint gives no gRPC address (an http:// --endpoint "
                              "names REST only): use port-forward or a LoadBalancer Service")
        return tuple(grpc_predict_url(b, self.model_name) for b in self.grpc_bases)


class Backend(Protocol):
    """Deploys Configs: one at a time, or several at once when ``holds_many``."""

    holds_many: bool  # several Configs may be up at once (the search interleaves them)

    def deploy(self, config: Config) -> Target:
        """Brings ``config`` up, waits until its model answers, and returns where it is."""
        ...

    def problems(self, config: Config | None = None) -> list[str]:
        """What went wrong with a deployed Config without stopping it (a replica that
        exited mid-run, say); checked after each measurement and recorded in status.json.
        ``config``: that Config's (a backend holding one may ignore it), else all."""
        ...

    def teardown(self, config: Config | None = None) -> None:
        """Removes ``config``'s deployment (or everything deployed); safe to call twice."""
        ...


def predict_url(base_url: str, model_name: str) -> str:
    return f"{base_url.rstrip('/')}/v1/models/{model_name}:predict"


def grpc_predict_url(grpc_base: str, model_name: str) -> str:
    """``grpc://HOST:PORT`` + the model: the generator's gRPC target (loadgen.targets parses it)."""
    return f"{grpc_base.rstrip('/')}/{model_name}"
